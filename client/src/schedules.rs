//! Periodic schedules.

use reqwest::{Method, StatusCode};

use crate::send::{Repeat, Request};
use crate::types::{CreateSchedule, JobView, ScheduleList, ScheduleView, UpdateSchedule};
use crate::{Client, Error};

impl Client {
    /// `POST /schedules`. A retry after an unknown outcome would answer
    /// 409 for the schedule the first try made, so it is retried only
    /// when surely not made.
    pub async fn create_schedule(&self, schedule: &CreateSchedule) -> Result<ScheduleView, Error> {
        self.send(
            Request::new(Method::POST, self.url(&["schedules"]), Repeat::IfNotActedOn)
                .json(schedule)?,
        )
        .await?
        .read(&[StatusCode::CREATED])
    }

    /// `GET /schedules`.
    pub async fn schedules(&self) -> Result<ScheduleList, Error> {
        self.get(&["schedules"]).await
    }

    /// `GET /schedules/{name}`.
    pub async fn schedule(&self, name: &str) -> Result<ScheduleView, Error> {
        self.get(&["schedules", name]).await
    }

    /// `PATCH /schedules/{name}`.
    pub async fn update_schedule(
        &self,
        name: &str,
        update: &UpdateSchedule,
    ) -> Result<ScheduleView, Error> {
        self.send(
            Request::new(Method::PATCH, self.url(&["schedules", name]), Repeat::Safe)
                .json(update)?,
        )
        .await?
        .read(&[StatusCode::OK])
    }

    /// `DELETE /schedules/{name}`.
    pub async fn delete_schedule(&self, name: &str) -> Result<(), Error> {
        let answer = self
            .send(Request::new(
                Method::DELETE,
                self.url(&["schedules", name]),
                Repeat::IfNotActedOn,
            ))
            .await?;
        if answer.status == StatusCode::NO_CONTENT {
            Ok(())
        } else {
            Err(answer.error())
        }
    }

    /// `POST /schedules/{name}/pause`.
    pub async fn pause_schedule(&self, name: &str) -> Result<ScheduleView, Error> {
        self.schedule_action(name, "pause", Repeat::Safe, StatusCode::OK)
            .await
    }

    /// `POST /schedules/{name}/resume`.
    pub async fn resume_schedule(&self, name: &str) -> Result<ScheduleView, Error> {
        self.schedule_action(name, "resume", Repeat::Safe, StatusCode::OK)
            .await
    }

    /// Makes one job from the schedule now (`POST /schedules/{name}/trigger`).
    pub async fn trigger_schedule(&self, name: &str) -> Result<JobView, Error> {
        self.schedule_action(name, "trigger", Repeat::IfNotActedOn, StatusCode::CREATED)
            .await
    }

    async fn schedule_action<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        action: &str,
        repeat: Repeat,
        ok: StatusCode,
    ) -> Result<T, Error> {
        self.send(Request::new(
            Method::POST,
            self.url(&["schedules", name, action]),
            repeat,
        ))
        .await?
        .read(&[ok])
    }
}
