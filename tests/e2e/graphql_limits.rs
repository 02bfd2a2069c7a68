//! GraphQL operation limits on every transport: a document over the size, root-field or alias
//! limit is refused with the same errors (code `LIMIT_EXCEEDED`, the limit named) over HTTP
//! (single, batch, GET), `graphql-transport-ws`, the legacy `graphql-ws` and SSE, before any
//! upstream call; and documents that would recurse without end are refused, not run.

use serde_json::{json, Value};

use crate::support::{demo_with, open_stream, send, Demo, GraphqlWs, Reply};

/// A gateway with small limits: 300-byte documents, 2 root fields, 1 alias.
async fn limited() -> Demo {
    demo_with(|c| {
        c.graphql.limits.max_document_bytes = 300;
        c.graphql.limits.max_root_fields = 2;
        c.graphql.limits.max_aliases = 1;
    })
    .await
}

/// Documents over each limit, and the errors they get.
fn refused() -> Vec<(String, Value)> {
    let error = |message: &str, limit: &str| json!([{"message": message, "extensions": {"code": "LIMIT_EXCEEDED", "limit": limit}}]);
    let big = format!("{{ listShelves {{ nextPageToken }} }} #{}", "x".repeat(300));
    vec![
        (
            big.clone(),
            error(
                &format!("the document is {} bytes; the limit is 300", big.len()),
                "max_document_bytes",
            ),
        ),
        (
            "{ listShelves { nextPageToken } listAuthors { nextPageToken } getShelf(name: \"shelves/1\") { name } }".into(),
            error(
                "the operation selects 3 root fields; the limit is 2",
                "max_root_fields",
            ),
        ),
        (
            "{ listShelves { a: nextPageToken b: nextPageToken } }".into(),
            error("the document uses 2 aliases; the limit is 1", "max_aliases"),
        ),
        (
            "subscription { a: watchShelf(name: \"shelves/1\") { kind } b: watchShelf(name: \"shelves/2\") { kind } }".into(),
            error("the document uses 2 aliases; the limit is 1", "max_aliases"),
        ),
    ]
}

const ALLOWED: &str = "{ getShelf(name: \"shelves/1\") { name } }";

fn upstream_calls(d: &Demo) -> usize {
    ["ListShelves", "GetShelf", "WatchShelf"]
        .iter()
        .map(|m| d.backends.library_backend.calls(m))
        .sum::<usize>()
        + d.backends.authors_backend.calls("ListAuthors")
}

async fn post(d: &Demo, accept: &str, body: Value) -> Reply {
    send(
        "POST",
        &d.url("/graphql"),
        &[("content-type", "application/json"), ("accept", accept)],
        body.to_string(),
    )
    .await
}

#[tokio::test]
async fn over_http_a_document_over_a_limit_is_refused_before_any_upstream_call() {
    let d = limited().await;
    for (query, errors) in refused() {
        let r = post(&d, "application/json", json!({ "query": query })).await;
        assert_eq!(
            (r.status, r.json()),
            (200, json!({ "data": null, "errors": errors })),
            "{query}"
        );
        let r = post(
            &d,
            "application/graphql-response+json",
            json!({ "query": query }),
        )
        .await;
        assert_eq!(
            (r.status, r.json()),
            (400, json!({ "data": null, "errors": errors })),
            "{query}"
        );
        let url = format!(
            "{}?query={}",
            d.url("/graphql"),
            percent_encoding::utf8_percent_encode(&query, percent_encoding::NON_ALPHANUMERIC)
        );
        let r = send("GET", &url, &[], "").await;
        assert_eq!(
            (r.status, r.json()),
            (200, json!({ "data": null, "errors": errors })),
            "{query}"
        );
    }
    assert_eq!(upstream_calls(&d), 0);
}

#[tokio::test]
async fn in_a_batch_only_the_operations_over_a_limit_are_refused() {
    let d = limited().await;
    for (query, errors) in refused() {
        let batch = json!([{ "query": query }, { "query": ALLOWED }, { "query": query }]);
        let r = post(&d, "application/graphql-response+json", batch).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.json(),
            json!([
                { "data": null, "errors": errors },
                { "data": { "getShelf": { "name": "shelves/1" } } },
                { "data": null, "errors": errors },
            ]),
            "{query}"
        );
    }
    let batch = json!([{ "query": refused()[0].0 }, { "query": refused()[2].0 }]);
    let r = post(&d, "application/graphql-response+json", batch).await;
    assert_eq!(r.status, 400, "only refused operations: {}", r.text());
    assert_eq!(d.backends.library_backend.calls("ListShelves"), 0);
}

#[tokio::test]
async fn over_graphql_transport_ws_a_document_over_a_limit_is_an_error_message() {
    let d = limited().await;
    let mut ws = GraphqlWs::connect(&d.gw, "graphql-transport-ws").await;
    ws.init(None).await;
    for (query, errors) in refused() {
        ws.subscribe("r", &query, json!({})).await;
        assert_eq!(
            ws.recv().await,
            json!({"type": "error", "id": "r", "payload": errors}),
            "{query}"
        );
    }
    // The connection still runs operations within the limits.
    ws.subscribe("ok", ALLOWED, json!({})).await;
    let next = ws.recv().await;
    assert_eq!(
        next["payload"]["data"]["getShelf"]["name"], "shelves/1",
        "{next}"
    );
    assert_eq!(d.backends.library_backend.calls("ListShelves"), 0);
    assert_eq!(d.backends.library_backend.calls("WatchShelf"), 0);
}

#[tokio::test]
async fn over_legacy_graphql_ws_a_document_over_a_limit_is_an_error_message() {
    let d = limited().await;
    let mut ws = GraphqlWs::connect(&d.gw, "graphql-ws").await;
    ws.init(None).await;
    for (query, errors) in refused() {
        ws.send(json!({"type": "start", "id": "r", "payload": {"query": query}}))
            .await;
        assert_eq!(
            ws.recv().await,
            json!({"type": "error", "id": "r", "payload": errors}),
            "{query}"
        );
    }
    assert_eq!(upstream_calls(&d), 0);
}

#[tokio::test]
async fn over_sse_a_document_over_a_limit_is_one_next_event_with_the_errors() {
    let d = limited().await;
    for (query, errors) in refused() {
        let mut stream = open_stream(
            "POST",
            &d.url("/graphql"),
            &[
                ("content-type", "application/json"),
                ("accept", "text/event-stream"),
            ],
            json!({ "query": query }).to_string(),
        )
        .await;
        assert_eq!(stream.status, 200, "{query}");
        let body = stream.rest().await;
        let data = json!({ "errors": errors });
        assert_eq!(
            body,
            format!("event: next\ndata: {data}\n\nevent: complete\ndata:\n\n"),
            "{query}"
        );
    }
    assert_eq!(upstream_calls(&d), 0);
}

#[tokio::test]
async fn fragments_that_spread_each_other_are_refused_and_the_gateway_keeps_serving() {
    let d = demo_with(|_| {}).await;
    let cyclic = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
    let fan_out: String = std::iter::once("query { ...F0 }".to_string())
        .chain((0..40).map(|i| format!("fragment F{i} on Query {{ ...F{n} ...F{n} }}", n = i + 1)))
        .chain(std::iter::once(
            "fragment F40 on Query { listShelves { nextPageToken } }".to_string(),
        ))
        .collect::<Vec<_>>()
        .join(" ");
    for query in [cyclic, &fan_out] {
        let r = post(
            &d,
            "application/graphql-response+json",
            json!({ "query": query }),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.json()["errors"][0]["message"].is_string(), "{}", r.text());
    }
    let r = post(&d, "application/json", json!({ "query": ALLOWED })).await;
    assert_eq!(
        r.json()["data"]["getShelf"]["name"],
        "shelves/1",
        "{}",
        r.text()
    );
    assert_eq!(d.backends.library_backend.calls("ListShelves"), 0);
}

#[tokio::test]
async fn fragments_that_multiply_the_selection_are_refused_before_validation() {
    // Each fragment spreads the next one twice: 2^24 selections from a 1 KB document, which
    // async-graphql's validation would walk one by one.
    let d = demo_with(|_| {}).await;
    let fan_out: String = std::iter::once("query { ...F0 }".to_string())
        .chain((0..24).map(|i| format!("fragment F{i} on Query {{ ...F{n} ...F{n} }}", n = i + 1)))
        .chain(std::iter::once(
            "fragment F24 on Query { listShelves { nextPageToken } }".to_string(),
        ))
        .collect::<Vec<_>>()
        .join(" ");
    let r = post(
        &d,
        "application/graphql-response+json",
        json!({ "query": fan_out }),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["errors"][0]["extensions"],
        json!({"code": "LIMIT_EXCEEDED", "limit": "max_complexity"}),
        "{}",
        r.text()
    );
    // The same shape a few levels deep is an ordinary query.
    let small = "query { ...F0 } fragment F0 on Query { ...F1 ...F1 } \
                 fragment F1 on Query { listShelves { shelves { name } } }";
    let r = post(&d, "application/json", json!({ "query": small })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["data"]["listShelves"]["shelves"].is_array(),
        "{}",
        r.text()
    );
}
