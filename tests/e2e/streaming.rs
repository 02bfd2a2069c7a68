//! Server streaming over REST: `GET /v1/shelves/{shelf}:watch` (WatchShelf) as NDJSON, SSE or
//! one JSON array; errors mid-stream; cancellation when the client goes away.

use serde_json::{json, Value};

use crate::support::{
    demo, demo_with, eventually, get, open_stream, post_json, send, Demo, Streamed,
};

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"))
}

/// The next NDJSON line as JSON.
async fn next_event(stream: &mut Streamed) -> Value {
    let line = stream.next_line().await.expect("another line");
    parse(&line)
}

/// The next SSE event: (event type, data), skipping nothing but the blank separator.
async fn next_sse(stream: &mut Streamed) -> Option<(String, Value)> {
    let mut event = "message".to_string();
    loop {
        let line = stream.next_line().await?;
        if line.is_empty() {
            continue;
        }
        if let Some(kind) = line.strip_prefix("event: ") {
            event = kind.to_string();
            continue;
        }
        let data = line
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not an SSE data line: {line:?}"));
        return Some((event, parse(data)));
    }
}

async fn watchers_drop_to_zero(d: &Demo) {
    let backend = d.backends.library_backend.clone();
    assert!(
        eventually(|| backend.active_watchers() == 0).await,
        "the backend stream stayed open: {} watchers",
        backend.active_watchers()
    );
}

/// Delete shelf 2 and its books, which ends every watch of it.
async fn delete_shelf_2(d: &Demo) {
    let r = send("DELETE", &d.url("/v1/shelves/2?force=true"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({}));
}

#[tokio::test]
async fn watch_streams_ndjson_lines_and_dropping_the_connection_cancels_the_backend_stream() {
    let d = demo().await;
    let mut stream = open_stream("GET", &d.url("/v1/shelves/1:watch"), &[], "").await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("application/x-ndjson"));
    assert!(stream.header("x-request-id").is_some());
    for n in 1..=3 {
        let event = next_event(&mut stream).await;
        assert_eq!(event["kind"], "EXISTING", "{event}");
        assert_eq!(event["book"]["name"], format!("shelves/1/books/{n}"));
        assert!(
            event["eventTime"].is_string(),
            "Timestamp as RFC 3339: {event}"
        );
    }
    assert_eq!(d.backends.library_backend.active_watchers(), 1);

    // A change made while watching arrives as the next line.
    let created = post_json(&d.url("/v1/shelves/1/books"), json!({"title": "Live"})).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let event = next_event(&mut stream).await;
    assert_eq!(event["kind"], "CREATED");
    assert_eq!(event["book"]["title"], "Live");
    assert_eq!(event["sequence"], "1", "int64 as a string: {event}");

    drop(stream);
    watchers_drop_to_zero(&d).await;
}

#[tokio::test]
async fn dropping_an_idle_watch_cancels_the_backend_stream() {
    let d = demo().await;
    let mut stream = open_stream(
        "GET",
        &d.url("/v1/shelves/1:watch?changes_only=true"),
        &[],
        "",
    )
    .await;
    assert_eq!(stream.status, 200);
    assert_eq!(d.backends.library_backend.active_watchers(), 1);
    // changes_only: nothing until a change.
    post_json(&d.url("/v1/shelves/1/books"), json!({"title": "First"})).await;
    let event = next_event(&mut stream).await;
    assert_eq!(
        (event["kind"].as_str(), event["book"]["title"].as_str()),
        (Some("CREATED"), Some("First"))
    );
    drop(stream);
    watchers_drop_to_zero(&d).await;
}

#[tokio::test]
async fn watch_with_accept_event_stream_sends_sse_data_events() {
    let d = demo().await;
    let mut stream = open_stream(
        "GET",
        &d.url("/v1/shelves/2:watch"),
        &[("accept", "text/html, text/event-stream;q=0.9")],
        "",
    )
    .await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-cache"));
    for n in 1..=2 {
        let (kind, data) = next_sse(&mut stream).await.expect("an event");
        assert_eq!(kind, "message");
        assert_eq!(data["kind"], "EXISTING");
        assert_eq!(data["book"]["name"], format!("shelves/2/books/{n}"));
    }
    drop(stream);
    watchers_drop_to_zero(&d).await;
}

#[tokio::test]
async fn a_watched_shelf_that_gets_deleted_ends_the_ndjson_stream_cleanly() {
    let d = demo().await;
    let mut stream = open_stream("GET", &d.url("/v1/shelves/2:watch"), &[], "").await;
    assert_eq!(stream.status, 200);
    // The response headers only arrive once the backend subscribed, so no change is missed.
    delete_shelf_2(&d).await;
    let rest = stream.rest().await;
    let kinds: Vec<(String, String)> = rest
        .lines()
        .map(parse)
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["book"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("EXISTING".into(), "shelves/2/books/1".into()),
            ("EXISTING".into(), "shelves/2/books/2".into()),
            ("DELETED".into(), "shelves/2/books/1".into()),
            ("DELETED".into(), "shelves/2/books/2".into()),
        ],
        "{rest}"
    );
    watchers_drop_to_zero(&d).await;
}

#[tokio::test]
async fn stream_format_json_array_sends_one_json_array() {
    let d = demo_with(|c| {
        c.transcoding.stream_format = omnigate::config::StreamFormatConfig::JsonArray
    })
    .await;
    let mut stream = open_stream("GET", &d.url("/v1/shelves/2:watch"), &[], "").await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("application/json"));
    delete_shelf_2(&d).await;
    let body = stream.rest().await;
    let events: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let kinds: Vec<&str> = events
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["EXISTING", "EXISTING", "DELETED", "DELETED"]);

    // SSE still wins when asked for.
    let mut sse = open_stream(
        "GET",
        &d.url("/v1/shelves/1:watch"),
        &[("accept", "text/event-stream")],
        "",
    )
    .await;
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert!(next_sse(&mut sse).await.is_some());
}

#[tokio::test]
async fn a_json_array_stream_with_no_messages_is_an_empty_array() {
    let d = demo_with(|c| {
        c.transcoding.stream_format = omnigate::config::StreamFormatConfig::JsonArray
    })
    .await;
    let mut stream = open_stream(
        "GET",
        &d.url("/v1/shelves/2:watch?changes_only=true"),
        &[],
        "",
    )
    .await;
    assert_eq!(stream.status, 200);
    // Only the two DELETED events; then an empty shelf has nothing more.
    delete_shelf_2(&d).await;
    let body: Value = serde_json::from_str(&stream.rest().await).expect("JSON array");
    assert_eq!(body.as_array().map(Vec::len), Some(2), "{body}");

    let r = post_json(&d.url("/v1/shelves"), json!({"theme": "Empty"})).await;
    let name = r.json()["name"].as_str().expect("shelf name").to_string();
    let mut stream = open_stream("GET", &d.url(&format!("/v1/{name}:watch")), &[], "").await;
    let r = send("DELETE", &d.url(&format!("/v1/{name}")), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stream.rest().await, "[]");
}

/// A deadline that passes while the stream is open is an error after the last message.
#[tokio::test]
async fn an_error_mid_stream_ends_ndjson_with_an_error_object() {
    let d = demo().await;
    let mut stream = open_stream(
        "GET",
        &d.url("/v1/shelves/2:watch"),
        &[("grpc-timeout", "300m")],
        "",
    )
    .await;
    assert_eq!(stream.status, 200);
    let lines: Vec<Value> = stream.rest().await.lines().map(parse).collect();
    let (last, events) = lines.split_last().expect("at least the error line");
    assert!(events.iter().all(|e| e["kind"] == "EXISTING"), "{lines:?}");
    assert_eq!(last["error"]["code"], 4, "{last}");
    assert!(last["error"]["message"].is_string(), "{last}");
    assert_eq!(
        last["error"]["details"][0]["reason"], "UPSTREAM_TIMEOUT",
        "{last}"
    );
    watchers_drop_to_zero(&d).await;
}

#[tokio::test]
async fn an_error_mid_stream_ends_sse_with_an_error_event() {
    let d = demo().await;
    let mut stream = open_stream(
        "GET",
        &d.url("/v1/shelves/2:watch"),
        &[("accept", "text/event-stream"), ("grpc-timeout", "300m")],
        "",
    )
    .await;
    let mut events = Vec::new();
    while let Some(event) = next_sse(&mut stream).await {
        events.push(event);
    }
    let ((kind, data), before) = events.split_last().expect("the error event");
    assert_eq!(kind, "error", "{events:?}");
    assert_eq!(data["error"]["code"], 4, "{data}");
    assert!(before.iter().all(|(k, _)| k == "message"), "{events:?}");
}

#[tokio::test]
async fn an_error_mid_stream_ends_a_json_array_with_an_error_element() {
    let d = demo_with(|c| {
        c.transcoding.stream_format = omnigate::config::StreamFormatConfig::JsonArray
    })
    .await;
    let mut stream = open_stream(
        "GET",
        &d.url("/v1/shelves/1:watch"),
        &[("grpc-timeout", "300m")],
        "",
    )
    .await;
    let body = stream.rest().await;
    let items: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let items = items.as_array().expect("array");
    assert_eq!(items.last().expect("error element")["error"]["code"], 4);
}

#[tokio::test]
async fn a_watch_that_fails_before_the_first_message_is_a_plain_error_response() {
    let d = demo().await;
    let cases = [
        ("/v1/shelves/100:watch", 404, 5),
        ("/v1/shelves/fail-internal:watch", 500, 13),
        ("/v1/shelves/fail-unauthenticated:watch", 401, 16),
    ];
    for (path, status, code) in cases {
        let r = get(&d.url(path)).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["code"], code, "{path}");
    }
    assert_eq!(d.backends.library_backend.active_watchers(), 0);
}

#[tokio::test]
async fn a_server_stream_is_reachable_through_auto_mapping() {
    let d = demo().await;
    let mut stream = open_stream(
        "POST",
        &d.url("/library.v1.Library/WatchShelf"),
        &[("content-type", "application/json")],
        r#"{"name": "shelves/2"}"#,
    )
    .await;
    assert_eq!(stream.status, 200);
    let event = next_event(&mut stream).await;
    assert_eq!(event["book"]["name"], "shelves/2/books/1");
    drop(stream);
    watchers_drop_to_zero(&d).await;
}

#[tokio::test]
async fn an_any_in_a_streamed_event_is_rendered_with_its_type_through_the_descriptor_pool() {
    let d = demo().await;
    let mut stream = open_stream(
        "GET",
        &d.url("/v1/shelves/1:watch?changes_only=true"),
        &[],
        "",
    )
    .await;
    assert_eq!(stream.status, 200);
    let r = post_json(&d.url("/v1/shelves/1/books/3:publish"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let event = next_event(&mut stream).await;
    assert_eq!(event["kind"], "UPDATED", "{event}");
    assert_eq!(event["book"]["state"], "PUBLISHED");
    assert_eq!(
        event["details"],
        json!({
            "@type": "type.googleapis.com/google.protobuf.FieldMask",
            "value": "state,publishTime",
        })
    );
}

#[tokio::test]
async fn a_backend_wide_timeout_does_not_cut_a_long_lived_watch() {
    let d = demo_with(|c| c.grpc[0].timeout = Some("100ms".into())).await;
    let mut stream = open_stream(
        "GET",
        &d.url("/v1/shelves/1:watch?changes_only=true"),
        &[],
        "",
    )
    .await;
    assert_eq!(stream.status, 200);
    // Outlive the backend's unary timeout, then make a change.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    post_json(&d.url("/v1/shelves/1/books"), json!({"title": "Late"})).await;
    let event = next_event(&mut stream).await;
    assert_eq!(event["kind"], "CREATED", "{event}");
}
