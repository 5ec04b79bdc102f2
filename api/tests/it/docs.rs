//! The OpenAPI document and the offline `/docs` page.

use serde_json::Value;

use crate::support::TestApp;

/// Every operation of the document, as (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            found.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    found
}

#[tokio::test]
async fn the_openapi_document_says_what_the_api_does() {
    let app = TestApp::start().await;
    let (_, doc) = app.get("/openapi.json").await;
    // Filters are optional query parameters, not path parameters.
    let list = &doc["paths"]["/jobs"]["get"]["parameters"];
    for param in list.as_array().expect("parameters") {
        assert_eq!(param["in"], "query", "{param}");
        assert_eq!(param["required"], false, "{param}");
    }
    // Every error is a problem document; job ids are UUIDs.
    for (method, path, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().expect("responses") {
            if status.starts_with('4') || status.starts_with('5') {
                let content = response["content"].as_object().expect("content");
                assert!(
                    content.contains_key("application/problem+json")
                        && !content.contains_key("application/json"),
                    "{method} {path} {status}: {response}"
                );
            }
        }
        assert!(operation.get("security").is_none(), "no token configured");
        assert_eq!(
            operation["responses"].get("403").is_some(),
            method != "get",
            "{method} {path}: cross-site refusals are documented where they happen"
        );
        for param in operation["parameters"].as_array().into_iter().flatten() {
            if param["name"] == "id" {
                assert_eq!(param["schema"]["format"], "uuid", "{method} {path}");
            }
        }
    }
    let batch = &doc["components"]["schemas"]["CreateBatch"]["properties"]["jobs"];
    assert_eq!(
        (batch["minItems"].as_u64(), batch["maxItems"].as_u64()),
        (Some(1), Some(1000))
    );
    let ready = &doc["components"]["schemas"]["QueueView"]["properties"]["ready"];
    assert_ne!(ready["propertyNames"]["type"], "integer", "{ready}");
    assert!(
        doc["info"]["license"].get("identifier").is_none(),
        "no dead SPDX link"
    );
    assert!(doc["components"].get("securitySchemes").is_none());
}

#[tokio::test]
async fn with_a_token_every_protected_operation_declares_it_and_its_401() {
    let app = TestApp::with_token("a-token-of-sixteen-chars").await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .bearer_auth("a-token-of-sixteen-chars")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (method, path, operation) in operations(&doc) {
        let open = ["/health", "/ready", "/metrics"].contains(&path.as_str());
        assert_eq!(operation.get("security").is_none(), open, "{method} {path}");
        assert_eq!(
            operation["responses"].get("401").is_none(),
            open,
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_malformed_path_parameter_is_a_problem_document() {
    let app = TestApp::start().await;
    for path in ["/jobs/%FF", "/jobs/%FF/cancel", "/jobs/not-a-uuid/result"] {
        let response = app.client.get(app.url(path)).send().await.expect("send");
        let response = if path.ends_with("cancel") {
            app.client.post(app.url(path)).send().await.expect("send")
        } else {
            response
        };
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let (status, problem) = crate::support::into_parts(response).await;
        crate::support::assert_problem(status, &problem, 422, "invalid_field");
        assert_eq!(problem["field"], "id", "{path}");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = TestApp::start().await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/jobs", "post"),
        ("/jobs/batch", "post"),
        ("/jobs", "get"),
        ("/jobs/{id}", "get"),
        ("/jobs/{id}/cancel", "post"),
        ("/jobs/{id}/retry", "post"),
        ("/jobs/{id}/result", "get"),
        ("/jobs/summary", "get"),
        ("/queues", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    let create = &paths["/jobs"]["post"];
    for code in ["200", "201", "400", "409", "413", "415", "422", "503"] {
        assert!(
            create["responses"].get(code).is_some(),
            "POST /jobs lacks {code}"
        );
    }
    assert!(
        create["requestBody"]["content"]
            .get("multipart/form-data")
            .is_some()
    );
}

#[tokio::test]
async fn the_docs_page_and_its_assets_are_served_by_the_binary() {
    let app = TestApp::start().await;
    let page = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("send");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui-bundle.js"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN in the page"
    );
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .expect("send");
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.expect("js").len() > 100_000);
}
