use sea_orm::EntityTrait;

use super::{Store, StoreError};
use crate::job::{Job, JobId};

impl Store {
    /// The job with this id, if any.
    pub async fn find(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(entity::job::Entity::find_by_id(id.as_uuid())
            .one(&self.db)
            .await?)
    }
}
