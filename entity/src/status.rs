use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Where a job is in its life. Stored as lower-case text; the strings are part
/// of the HTTP contract, so renaming one is a breaking change.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for its first attempt (or re-queued by a manual retry).
    #[sea_orm(string_value = "queued")]
    Queued,
    /// Claimed by a worker, which holds a lease on it.
    #[sea_orm(string_value = "running")]
    Running,
    /// An attempt failed retryably; waiting until `run_at` for the next one.
    #[sea_orm(string_value = "retrying")]
    Retrying,
    /// Finished successfully; `result` is set. Terminal.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// Failed permanently or ran out of attempts. Terminal but for a manual retry.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Canceled before or while running. Terminal but for a manual retry.
    #[sea_orm(string_value = "canceled")]
    Canceled,
}

impl JobStatus {
    /// Every status, in the order the state machine introduces them.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Retrying,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    /// The status as stored and as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Retrying => "retrying",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    /// Completed, failed and canceled jobs change only by an explicit retry.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled
        )
    }

    /// Queued and retrying jobs are waiting to be claimed.
    pub fn is_waiting(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Retrying)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A string that names no [`JobStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl std::fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown job status {:?}; expected one of queued, running, retrying, completed, failed, canceled",
            self.0
        )
    }
}

impl std::error::Error for UnknownStatus {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
        }
        assert!("done".parse::<JobStatus>().is_err());
    }
}
