//! Enqueueing inside the caller's own transaction.
//!
//! The job rows are written on the caller's connection, so they commit or
//! roll back with everything else the transaction wrote: a job exists if
//! and only if the transaction committed. Each job created is also written
//! into the outbox `job_announcements`, in the same transaction, with a
//! `NOTIFY` that PostgreSQL delivers at commit (and drops on rollback); the
//! maintenance leader's commit listener wakes on it, publishes the jobs to
//! Redis and empties the outbox. Nothing here touches Redis, so an
//! application needs only its database connection to enqueue this way.
//!
//! If the notification is missed (no worker leads at that moment, the
//! leader dies before publishing), the outbox keeps the announcement: the
//! leader publishes it on its next tick, or the next leader when it starts.
//! A job is never lost, at worst a tick later.

use sea_orm::ConnectionTrait;

use crate::job::{JobId, NewJob};
use crate::store::{Inserted, StoreError, announce, insert_many_on};

/// Inserts `job` through `txn`, an open sea-orm transaction on Conveyor's
/// database, honouring its id and idempotency key as
/// [`Client::enqueue`](super::Client::enqueue) does, and announces it for
/// publication at commit.
///
/// A key already used by a committed job answers [`Inserted::Replayed`] or
/// [`Inserted::Conflict`] as usual; a key used by another transaction still
/// in progress makes this wait for it. Under REPEATABLE READ or
/// SERIALIZABLE, such a race ends in a serialization failure instead: retry
/// the transaction, as with any other.
pub async fn enqueue_in<C: ConnectionTrait>(txn: &C, job: NewJob) -> Result<Inserted, StoreError> {
    let mut outcomes = enqueue_many_in(txn, vec![job]).await?;
    outcomes
        .pop()
        .ok_or_else(|| StoreError::from(sea_orm::DbErr::RecordNotInserted))
}

/// [`enqueue_in`] for many jobs in one statement: one outcome per job, in
/// order. Any invalid job fails the call before anything is written; a
/// job PostgreSQL refuses fails the statement, and with it the caller's
/// transaction. (On a connection that is not in a transaction, the jobs
/// and their announcement commit as two statements: a failure between
/// them leaves jobs that the reconciler publishes, later.)
pub async fn enqueue_many_in<C: ConnectionTrait>(
    txn: &C,
    jobs: Vec<NewJob>,
) -> Result<Vec<Inserted>, StoreError> {
    for job in &jobs {
        job.validate()?;
    }
    let outcomes = insert_many_on(txn, &jobs).await?;
    let created: Vec<JobId> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Inserted::Created(job) => Some(JobId::from(job.id)),
            _ => None,
        })
        .collect();
    announce(txn, &created).await?;
    Ok(outcomes)
}
