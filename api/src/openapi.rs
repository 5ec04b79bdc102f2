//! The OpenAPI document, generated from the handlers' annotations, and the
//! interactive `/docs` page (Swagger UI, its assets compiled into the binary).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::routes::{health, jobs, queues};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conveyor",
        description = "A distributed job system: submit jobs, follow them, cancel and retry them. \
                       Errors are RFC 9457 problem documents with a stable `code`."
    ),
    paths(
        jobs::create_job, crate::routes::batch::create_batch, jobs::list_jobs, jobs::get_job, jobs::cancel_job, jobs::retry_job,
        jobs::job_result, jobs::summary, queues::list_queues, health::health, health::ready,
    ),
    modifiers(&BearerToken),
    tags(
        (name = "jobs", description = "Submit and follow jobs"),
        (name = "queues", description = "Queue backlogs and workers"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Declares the optional bearer token.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
