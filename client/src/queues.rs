//! Queues: their state and settings, pause and resume.

use reqwest::{Method, StatusCode};

use crate::send::{Repeat, Request};
use crate::types::{QueuePatch, QueueSettingsView, Queues};
use crate::{Client, Error};

impl Client {
    /// Every queue with its settings and backlog, and the live workers
    /// (`GET /queues`).
    pub async fn queues(&self) -> Result<Queues, Error> {
        self.get(&["queues"]).await
    }

    /// Changes the settings `patch` names (`PATCH /queues/{queue}`).
    pub async fn configure_queue(
        &self,
        queue: &str,
        patch: &QueuePatch,
    ) -> Result<QueueSettingsView, Error> {
        self.send(
            Request::new(Method::PATCH, self.url(&["queues", queue]), Repeat::Safe).json(patch)?,
        )
        .await?
        .read(&[StatusCode::OK])
    }

    /// No worker starts the queue's jobs until it is resumed
    /// (`POST /queues/{queue}/pause`).
    pub async fn pause_queue(&self, queue: &str) -> Result<QueueSettingsView, Error> {
        self.queue_action(queue, "pause").await
    }

    /// `POST /queues/{queue}/resume`.
    pub async fn resume_queue(&self, queue: &str) -> Result<QueueSettingsView, Error> {
        self.queue_action(queue, "resume").await
    }

    async fn queue_action(&self, queue: &str, action: &str) -> Result<QueueSettingsView, Error> {
        self.send(Request::new(
            Method::POST,
            self.url(&["queues", queue, action]),
            Repeat::Safe,
        ))
        .await?
        .read(&[StatusCode::OK])
    }
}
