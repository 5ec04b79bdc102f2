//! The OpenAPI document and the interactive `/docs` page (Swagger UI, its
//! assets compiled into the binary).
//!
//! Each route is declared once, with its documentation, through
//! `utoipa_axum::routes!`: the router and the document are built from the
//! same list, so no route can be missing from the document. What holds for
//! every route is added here, in one place, rather than repeated on each:
//! the errors every route can answer (403 for cross-site browser requests
//! on routes that change state, 413, 415 and 408 for routes with a body,
//! 503 for all), `application/problem+json` as the media type of
//! every error, and, when a token is configured, the bearer requirement and
//! its 401.

use axum::Router;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

/// The media type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conveyor",
        description = "A distributed job system: submit jobs, follow them, cancel and retry them. \
                       Errors are RFC 9457 problem documents (`application/problem+json`) with \
                       a stable `code`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(crate::routes::list::JobStatusName)),
    tags(
        (name = "jobs", description = "Submit and follow jobs"),
        (name = "queues", description = "Queue backlogs and workers"),
        (name = "workers", description = "The worker protocol: claim jobs, heartbeat, report \
                                           outcomes, from a worker in any language"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The routes' documents, by who may call them.
#[allow(missing_debug_implementations)]
pub struct Parts {
    /// Behind the API token, when one is configured.
    pub protected: utoipa::openapi::OpenApi,
    /// The worker protocol: behind the worker token, or the API token.
    pub workers: utoipa::openapi::OpenApi,
    /// Open to all.
    pub public: utoipa::openapi::OpenApi,
}

/// The whole document: the routes' [`Parts`] merged into [`ApiDoc`], the
/// bearer requirement on those that need a token, and the responses every
/// route shares.
pub fn document(
    parts: Parts,
    token_required: bool,
    worker_token_required: bool,
) -> utoipa::openapi::OpenApi {
    let Parts {
        mut protected,
        mut workers,
        public,
    } = parts;
    for (document, required) in [
        (&mut protected, token_required),
        (&mut workers, worker_token_required),
    ] {
        if required {
            for operation in operations(document) {
                operation.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                add_response(operation, "401", "The bearer token is missing or wrong");
            }
        }
    }
    let mut document = ApiDoc::openapi();
    document.merge(protected);
    document.merge(workers);
    document.merge(public);
    if token_required || worker_token_required {
        document
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
    for (method, operation) in operations_by_method(&mut document) {
        if method != "get" {
            add_response(
                operation,
                "403",
                "A browser sent this from a page of another site (Sec-Fetch-Site, Origin)",
            );
        }
        if operation.request_body.is_some() {
            add_response(operation, "400", "The body cannot be parsed");
            add_response(operation, "408", "The body stopped arriving");
            add_response(operation, "413", "The body is over the size limit");
            add_response(
                operation,
                "415",
                "The body is not of an accepted media type",
            );
        }
        add_response(
            operation,
            "503",
            "PostgreSQL or Redis unavailable, the server overloaded, or the request too slow",
        );
        for (status, response) in &mut operation.responses.responses {
            if status.starts_with(['4', '5'])
                && let RefOr::T(response) = response
                && let Some(json) = response.content.shift_remove("application/json")
            {
                response.content.insert(PROBLEM_JSON.to_owned(), json);
            }
        }
    }
    document
}

/// Every operation of `document`, to adjust.
fn operations(document: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    operations_by_method(document).map(|(_, operation)| operation)
}

/// Every operation of `document` with its method's name.
fn operations_by_method(
    document: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    document.paths.paths.values_mut().flat_map(|item| {
        [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("options", &mut item.options),
            ("head", &mut item.head),
            ("patch", &mut item.patch),
            ("trace", &mut item.trace),
        ]
        .into_iter()
        .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
    })
}

/// Documents a problem-document answer with `status`, unless the route
/// already documents that status.
fn add_response(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(problem_response(description)));
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// `/openapi.json` and the `/docs` page for `document`.
pub fn router(document: utoipa::openapi::OpenApi) -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", document))
}
