//! GraphQL subscriptions bridged to gRPC server streams (`WatchShelf`), over a real WebSocket
//! client (`graphql-transport-ws` and the legacy `graphql-ws`) and over SSE: events, errors,
//! cancellation reaching the upstream, multiplexing, close codes and bad inputs; and which
//! HTTP requests may carry which operations.

use serde_json::{json, Value};

use crate::support::{
    demo, eventually, graphql, open_stream, run_gateway, send, Demo, GraphqlWs, Streamed,
};

const TRANSPORT: &str = "graphql-transport-ws";
const LEGACY: &str = "graphql-ws";

const WATCH: &str = "subscription Watch($name: String!, $changesOnly: Boolean! = false) {
    watchShelf(name: $name, changesOnly: $changesOnly) { kind sequence book { name title } }
}";

/// The `watchShelf` event of a `next` (or legacy `data`) message for `id`, which must carry
/// no errors.
fn event<'a>(message: &'a Value, kind: &str, id: &str) -> &'a Value {
    assert_eq!(message["type"], kind, "{message}");
    assert_eq!(message["id"], id, "{message}");
    assert!(message["payload"].get("errors").is_none(), "{message}");
    &message["payload"]["data"]["watchShelf"]
}

fn complete(id: &str) -> Value {
    json!({"type": "complete", "id": id})
}

/// Waits (bounded) until the library backend has `n` open WatchShelf streams.
async fn watchers_become(d: &Demo, n: usize) {
    let backend = d.backends.library_backend.clone();
    assert!(
        eventually(|| backend.active_watchers() == n).await,
        "the library backend still has {} WatchShelf streams, expected {n}",
        backend.active_watchers()
    );
}

async fn create_book(d: &Demo, shelf: &str, title: &str) -> String {
    let body = graphql(
        &d.gw,
        "mutation($parent: String!, $title: String!) {
            createBook(parent: $parent, book: {title: $title, authorId: \"1\"}) { name }
        }",
        json!({"parent": shelf, "title": title}),
    )
    .await;
    body["data"]["createBook"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("createBook failed: {body}"))
        .to_string()
}

async fn delete_shelf(d: &Demo, shelf: &str) {
    let body = graphql(
        &d.gw,
        "mutation($name: String!) { deleteShelf(name: $name, force: true) }",
        json!({"name": shelf}),
    )
    .await;
    assert_eq!(body["data"]["deleteShelf"], true, "{body}");
}

// ----- graphql-transport-ws -------------------------------------------------------------

#[tokio::test]
async fn a_subscription_streams_existing_books_then_new_ones_and_completes_when_the_shelf_goes() {
    let d = demo().await;
    let mut ws = GraphqlWs::connect(&d.gw, TRANSPORT).await;
    ws.init(None).await;
    ws.subscribe("w", WATCH, json!({"name": "shelves/1"})).await;

    let mut titles = Vec::new();
    let mut sequence = 0;
    for _ in 0..3 {
        let message = ws.recv().await;
        let e = event(&message, "next", "w");
        assert_eq!(e["kind"], "EXISTING", "{e}");
        titles.push(e["book"]["title"].as_str().unwrap_or_default().to_string());
        sequence = e["sequence"]
            .as_str()
            .expect("Int64 is a string")
            .parse::<i64>()
            .unwrap();
    }
    assert_eq!(
        titles,
        [
            "The Glass Orchard",
            "Stars Beneath the Ice",
            "Notes Toward a Lighthouse"
        ]
    );
    watchers_become(&d, 1).await;

    // A book created through a GraphQL mutation on another connection arrives as `next`.
    let name = create_book(&d, "shelves/1", "Late Arrival").await;
    let message = ws.recv().await;
    let e = event(&message, "next", "w");
    assert_eq!(e["kind"], "CREATED");
    assert_eq!(e["book"]["name"], name.as_str());
    assert_eq!(e["book"]["title"], "Late Arrival");
    assert!(e["sequence"].as_str().unwrap().parse::<i64>().unwrap() > sequence);

    // Deleting the shelf ends the gRPC stream: its books go, then `complete`.
    delete_shelf(&d, "shelves/1").await;
    for _ in 0..4 {
        let message = ws.recv().await;
        assert_eq!(event(&message, "next", "w")["kind"], "DELETED");
    }
    assert_eq!(ws.recv().await, complete("w"));
    watchers_become(&d, 0).await;
}

#[tokio::test]
async fn a_grpc_error_of_the_watch_arrives_in_next_with_its_code_then_complete() {
    let d = demo().await;
    let mut ws = GraphqlWs::connect(&d.gw, TRANSPORT).await;
    ws.init(None).await;
    // (shelf, extensions.code): the backend fails the call before streaming anything.
    let cases = [
        ("shelves/fail-internal", "INTERNAL"),
        ("shelves/404", "NOT_FOUND"),
        ("shelves/fail-permission-denied", "PERMISSION_DENIED"),
        ("books/1", "INVALID_ARGUMENT"),
    ];
    for (shelf, code) in cases {
        ws.subscribe(shelf, WATCH, json!({"name": shelf})).await;
        // An execution error (the field failed), not a request error: `next`, then `complete`.
        let message = ws.recv().await;
        assert_eq!(message["type"], "next", "{shelf}: {message}");
        assert_eq!(message["id"], shelf);
        let error = &message["payload"]["errors"][0];
        assert_eq!(error["extensions"]["code"], code, "{shelf}: {message}");
        assert_eq!(error["path"], json!(["watchShelf"]), "{message}");
        assert!(message["payload"]["data"].is_null(), "{message}");
        assert_eq!(ws.recv().await, complete(shelf));
    }
    watchers_become(&d, 0).await;
}

#[tokio::test]
async fn client_complete_cancels_the_upstream_watch_and_nothing_more_is_sent_for_it() {
    let d = demo().await;
    let mut ws = GraphqlWs::connect(&d.gw, TRANSPORT).await;
    ws.init(None).await;
    ws.subscribe("w", WATCH, json!({"name": "shelves/2"})).await;
    for _ in 0..2 {
        let message = ws.recv().await;
        assert_eq!(event(&message, "next", "w")["kind"], "EXISTING");
    }
    watchers_become(&d, 1).await;

    ws.send(complete("w")).await;
    watchers_become(&d, 0).await;

    // A change after the cancel produces nothing for `w`: the next message is our pong.
    create_book(&d, "shelves/2", "Unseen").await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong"}));
    // The id is free again.
    ws.subscribe("w", WATCH, json!({"name": "shelves/2"})).await;
    let message = ws.recv().await;
    assert_eq!(event(&message, "next", "w")["kind"], "EXISTING");
}

#[tokio::test]
async fn closing_the_socket_or_vanishing_cancels_every_upstream_watch() {
    let d = demo().await;
    for vanish in [false, true] {
        let mut ws = GraphqlWs::connect(&d.gw, TRANSPORT).await;
        ws.init(None).await;
        ws.subscribe("a", WATCH, json!({"name": "shelves/1"})).await;
        ws.subscribe("b", WATCH, json!({"name": "shelves/2"})).await;
        for _ in 0..5 {
            assert_eq!(ws.recv().await["type"], "next");
        }
        watchers_become(&d, 2).await;
        if vanish {
            drop(ws); // TCP closed without a close frame
        } else {
            ws.close().await;
        }
        watchers_become(&d, 0).await;
    }
}

#[tokio::test]
async fn two_subscriptions_share_one_socket_and_each_gets_its_own_shelf() {
    let d = demo().await;
    let mut ws = GraphqlWs::connect(&d.gw, TRANSPORT).await;
    ws.init(None).await;
    let changes = |shelf: &str| json!({"name": shelf, "changesOnly": true});
    ws.subscribe("one", WATCH, changes("shelves/1")).await;
    ws.subscribe("two", WATCH, changes("shelves/2")).await;
    watchers_become(&d, 2).await;

    create_book(&d, "shelves/2", "For Two").await;
    let message = ws.recv().await;
    assert_eq!(event(&message, "next", "two")["book"]["title"], "For Two");
    create_book(&d, "shelves/1", "For One").await;
    let message = ws.recv().await;
    assert_eq!(event(&message, "next", "one")["book"]["title"], "For One");

    // Completing one leaves the other running.
    ws.send(complete("one")).await;
    watchers_become(&d, 1).await;
    create_book(&d, "shelves/1", "Nobody Watches").await;
    create_book(&d, "shelves/2", "Still Watched").await;
    let message = ws.recv().await;
    assert_eq!(
        event(&message, "next", "two")["book"]["title"],
        "Still Watched"
    );
    ws.send(complete("two")).await;
    watchers_become(&d, 0).await;
}

#[tokio::test]
async fn queries_and_mutations_run_over_the_socket_with_one_next_then_complete() {
    let d = demo().await;
    let mut ws = GraphqlWs::connect(&d.gw, TRANSPORT).await;
    ws.init(None).await;

    ws.subscribe(
        "q",
        "{ getShelf(name: \"shelves/2\") { name theme bookCount } }",
        json!({}),
    )
    .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "next", "id": "q", "payload": {"data": {"getShelf":
            {"name": "shelves/2", "theme": "Non-fiction", "bookCount": 2}}}})
    );
    assert_eq!(ws.recv().await, complete("q"));

    ws.subscribe(
        "m",
        "mutation { createShelf(shelf: {theme: \"Poetry\"}, shelfId: \"poems\") { name theme } }",
        json!({}),
    )
    .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "next", "id": "m", "payload": {"data": {"createShelf":
            {"name": "shelves/poems", "theme": "Poetry"}}}})
    );
    assert_eq!(ws.recv().await, complete("m"));
    assert_eq!(d.backends.library_backend.calls("CreateShelf"), 1);

    // An upstream error in a query is an execution error: `next` with errors, `complete`.
    ws.subscribe(
        "e",
        "{ getShelf(name: \"shelves/404\") { name } }",
        json!({}),
    )
    .await;
    let message = ws.recv().await;
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["payload"]["data"], json!({"getShelf": null}));
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"],
        "NOT_FOUND"
    );
    assert_eq!(ws.recv().await, complete("e"));
}

#[tokio::test]
async fn protocol_violations_close_the_socket_with_the_transport_codes() {
    let d = demo().await;
    let init = json!({"type": "connection_init"});
    let watch = json!({"type": "subscribe", "id": "1",
        "payload": {"query": WATCH, "variables": {"name": "shelves/1"}}});
    // (what the client does, messages it sends, close code, words in the reason)
    let cases: Vec<(&str, Vec<Value>, u16, &str)> = vec![
        (
            "subscribe before connection_init",
            vec![watch.clone()],
            4401,
            "Unauthorized",
        ),
        (
            "a second connection_init",
            vec![init.clone(), init.clone()],
            4429,
            "Too many initialisation requests",
        ),
        (
            "an id that is still running",
            vec![init.clone(), watch.clone(), watch.clone()],
            4409,
            "Subscriber for 1 already exists",
        ),
        (
            "a message that is not JSON",
            vec![json!("{not json")],
            4400,
            "Invalid message",
        ),
        (
            "a message without a type",
            vec![json!({"id": "1"})],
            4400,
            "Invalid message",
        ),
        (
            "a legacy message on the new protocol",
            vec![
                init.clone(),
                json!({"type": "start", "id": "1", "payload": {"query": "{ __typename }"}}),
            ],
            4400,
            "unknown type",
        ),
        (
            "a subscribe without a query",
            vec![
                init.clone(),
                json!({"type": "subscribe", "id": "1", "payload": {}}),
            ],
            4400,
            "query",
        ),
        (
            "a server-only message",
            vec![
                init.clone(),
                json!({"type": "next", "id": "1", "payload": {}}),
            ],
            4400,
            "server only",
        ),
    ];
    for (case, messages, code, words) in cases {
        let mut ws = GraphqlWs::connect(&d.gw, TRANSPORT).await;
        for message in messages {
            match message {
                Value::String(raw) => ws.send_text(&raw).await,
                message => ws.send(message).await,
            }
        }
        let (got, reason) = ws.closed().await;
        assert_eq!(got, code, "{case}: closed {got} {reason:?}");
        assert!(reason.contains(words), "{case}: {reason:?} lacks {words:?}");
    }
    // The watch of the duplicate-id case went with its socket.
    watchers_become(&d, 0).await;
}

#[tokio::test]
async fn a_client_offering_no_graphql_subprotocol_is_refused() {
    let d = demo().await;
    // tungstenite, like browsers, fails a handshake that does not select what it offered.
    let refused = GraphqlWs::try_connect(&d.gw, Some("chat")).await;
    assert!(refused.is_err(), "the handshake selected something");
    // Offering nothing: the upgrade completes without a subprotocol, then 4406.
    let (mut ws, selected) = GraphqlWs::try_connect(&d.gw, None)
        .await
        .expect("handshake");
    assert_eq!(selected, None);
    assert_eq!(
        ws.closed().await,
        (4406, "Subprotocol not acceptable".to_string())
    );
    // Both offered: the current protocol wins.
    let (_, selected) = GraphqlWs::try_connect(&d.gw, Some("graphql-ws, graphql-transport-ws"))
        .await
        .expect("handshake");
    assert_eq!(selected.as_deref(), Some(TRANSPORT));
}

#[tokio::test]
async fn credentials_in_connection_init_reach_every_backend_as_metadata() {
    let d = demo().await;
    let mut ws = GraphqlWs::connect(&d.gw, TRANSPORT).await;
    ws.init(Some(
        json!({"Authorization": "Bearer x", "x-request-id": "ws-init-7"}),
    ))
    .await;
    ws.subscribe("w", WATCH, json!({"name": "shelves/2"})).await;
    for _ in 0..2 {
        assert_eq!(ws.recv().await["type"], "next");
    }
    let header = |metadata: &tonic::metadata::MetadataMap, name: &str| {
        metadata
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let metadata = d
        .backends
        .library_backend
        .last_metadata()
        .expect("WatchShelf was called");
    assert_eq!(
        header(&metadata, "authorization").as_deref(),
        Some("Bearer x")
    );
    assert_eq!(
        header(&metadata, "x-request-id").as_deref(),
        Some("ws-init-7")
    );

    // A query on the same socket (another backend) carries them too.
    ws.subscribe("q", "{ getAuthor(id: \"3\") { id } }", json!({}))
        .await;
    assert_eq!(ws.recv().await["payload"]["data"]["getAuthor"]["id"], "3");
    let metadata = d
        .backends
        .authors_backend
        .last_metadata()
        .expect("GetAuthor was called");
    assert_eq!(
        header(&metadata, "authorization").as_deref(),
        Some("Bearer x")
    );
}

#[tokio::test]
async fn bad_operations_over_the_socket_answer_error_without_calling_the_backend() {
    let d = demo().await;
    let mut ws = GraphqlWs::connect(&d.gw, TRANSPORT).await;
    ws.init(None).await;
    // (id, query, variables, words expected in the first error message)
    let cases = [
        (
            "syntax",
            "subscription { watchShelf(",
            json!({}),
            "expected",
        ),
        (
            "unknown field",
            "subscription { watchShelf(name: \"shelves/1\") { nope } }",
            json!({}),
            "nope",
        ),
        (
            "unknown argument",
            "subscription { watchShelf(shelf: \"shelves/1\") { kind } }",
            json!({}),
            "shelf",
        ),
        (
            "wrong argument type",
            "subscription { watchShelf(name: 5) { kind } }",
            json!({}),
            "name",
        ),
        ("wrong variable type", WATCH, json!({"name": 5}), "name"),
        ("missing variable", WATCH, json!({}), "name"),
        (
            "client streaming is not a field",
            "subscription { importBooks { importedCount } }",
            json!({}),
            "importBooks",
        ),
        (
            "wrong enum in a query",
            "{ listBooks(parent: \"shelves/1\", genre: NOVEL) { totalSize } }",
            json!({}),
            "NOVEL",
        ),
    ];
    for (id, query, variables, words) in &cases {
        ws.subscribe(id, query, variables.clone()).await;
        let message = ws.recv().await;
        assert_eq!(message["type"], "error", "{id}: {message}");
        assert_eq!(message["id"], *id);
        let errors = message["payload"].as_array().expect("an array of errors");
        let text = errors[0]["message"].as_str().unwrap_or_default();
        assert!(text.contains(words), "{id}: {text:?} lacks {words:?}");
    }
    // No `complete` followed any of them: the next message answers our ping.
    ws.send(json!({"type": "ping", "payload": {"n": 1}})).await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "pong", "payload": {"n": 1}})
    );
    let backend = &d.backends.library_backend;
    assert_eq!(backend.calls("WatchShelf") + backend.calls("ListBooks"), 0);
    // Their ids are free again.
    ws.subscribe("syntax", WATCH, json!({"name": "shelves/2"}))
        .await;
    let message = ws.recv().await;
    assert_eq!(event(&message, "next", "syntax")["kind"], "EXISTING");
}

// ----- legacy graphql-ws ------------------------------------------------------------------

fn start(id: &str, shelf: &str) -> Value {
    json!({"type": "start", "id": id,
        "payload": {"query": WATCH, "variables": {"name": shelf}}})
}

#[tokio::test]
async fn legacy_start_streams_data_stop_cancels_the_upstream_and_a_deleted_shelf_completes() {
    let d = demo().await;
    let mut ws = GraphqlWs::connect(&d.gw, LEGACY).await;
    ws.init(None).await;

    ws.send(start("a", "shelves/2")).await;
    for _ in 0..2 {
        let message = ws.recv().await;
        assert_eq!(event(&message, "data", "a")["kind"], "EXISTING");
    }
    ws.send(start("b", "shelves/1")).await;
    for _ in 0..3 {
        let message = ws.recv().await;
        assert_eq!(event(&message, "data", "b")["kind"], "EXISTING");
    }
    watchers_become(&d, 2).await;

    // `stop` answers `complete` and cancels that watch only.
    ws.send(json!({"type": "stop", "id": "b"})).await;
    assert_eq!(ws.recv().await, complete("b"));
    watchers_become(&d, 1).await;

    // The gRPC stream ending (shelf deleted) completes the other.
    delete_shelf(&d, "shelves/2").await;
    for _ in 0..2 {
        let message = ws.recv().await;
        assert_eq!(event(&message, "data", "a")["kind"], "DELETED");
    }
    assert_eq!(ws.recv().await, complete("a"));
    watchers_become(&d, 0).await;

    // A gRPC error is data with errors; a bad query is `error`.
    ws.send(start("x", "shelves/fail-internal")).await;
    let message = ws.recv().await;
    assert_eq!(message["type"], "data", "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"],
        "INTERNAL"
    );
    assert_eq!(ws.recv().await, complete("x"));
    ws.send(json!({"type": "start", "id": "y", "payload": {"query": "subscription { nope }"}}))
        .await;
    let message = ws.recv().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["id"], "y");
}

// ----- SSE --------------------------------------------------------------------------------

async fn open_sse(d: &Demo, query: &str, variables: Value) -> Streamed {
    let stream = open_stream(
        "POST",
        &d.url("/graphql"),
        &[
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
        ],
        json!({"query": query, "variables": variables}).to_string(),
    )
    .await;
    assert_eq!(stream.status, 200);
    assert!(
        stream
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        stream.header("content-type")
    );
    stream
}

/// The next server-sent event: its name and its data as JSON (null when empty); keep-alive
/// comments are skipped. `None` at the end of the body.
async fn next_sse(stream: &mut Streamed) -> Option<(String, Value)> {
    let (mut name, mut data) = (None, String::new());
    loop {
        let line = stream.next_line().await?;
        if line.is_empty() {
            if let Some(name) = name.take() {
                let data = if data.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"))
                };
                return Some((name, data));
            }
        } else if let Some(value) = line.strip_prefix("event:") {
            name = Some(value.trim().to_string());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
}

#[tokio::test]
async fn sse_streams_next_events_then_complete_when_the_grpc_stream_ends() {
    let d = demo().await;
    let mut stream = open_sse(&d, WATCH, json!({"name": "shelves/2"})).await;
    for _ in 0..2 {
        let (name, data) = next_sse(&mut stream).await.expect("an event");
        assert_eq!(name, "next");
        assert_eq!(data["data"]["watchShelf"]["kind"], "EXISTING", "{data}");
    }
    let name = create_book(&d, "shelves/2", "Over SSE").await;
    let (_, data) = next_sse(&mut stream).await.expect("an event");
    assert_eq!(data["data"]["watchShelf"]["kind"], "CREATED");
    assert_eq!(data["data"]["watchShelf"]["book"]["name"], name.as_str());

    delete_shelf(&d, "shelves/2").await;
    for _ in 0..3 {
        let (name, data) = next_sse(&mut stream).await.expect("an event");
        assert_eq!(name, "next");
        assert_eq!(data["data"]["watchShelf"]["kind"], "DELETED");
    }
    let (name, _) = next_sse(&mut stream).await.expect("the complete event");
    assert_eq!(name, "complete");
    assert!(next_sse(&mut stream).await.is_none(), "the body ends");
    watchers_become(&d, 0).await;

    // A gRPC error: one `next` carrying it, then `complete`.
    let mut stream = open_sse(&d, WATCH, json!({"name": "shelves/fail-internal"})).await;
    let (name, data) = next_sse(&mut stream).await.expect("an event");
    assert_eq!(name, "next");
    assert_eq!(
        data["errors"][0]["extensions"]["code"], "INTERNAL",
        "{data}"
    );
    assert_eq!(next_sse(&mut stream).await.expect("complete").0, "complete");
}

#[tokio::test]
async fn a_subscription_over_plain_http_is_refused_pointing_at_the_streaming_transports() {
    let d = demo().await;
    let body = graphql(&d.gw, WATCH, json!({"name": "shelves/1"})).await;
    assert!(body["data"].is_null(), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("WebSocket") && message.contains("text/event-stream"),
        "{body}"
    );
    let strict = send(
        "POST",
        &d.url("/graphql"),
        &[
            ("content-type", "application/json"),
            ("accept", "application/graphql-response+json"),
        ],
        json!({"query": WATCH, "variables": {"name": "shelves/1"}}).to_string(),
    )
    .await;
    assert_eq!(strict.status, 400, "{}", strict.text());
    assert_eq!(d.backends.library_backend.calls("WatchShelf"), 0);
}

#[tokio::test]
async fn a_named_mutation_over_get_is_refused_like_an_anonymous_one() {
    let d = demo().await;
    // `mutation Drop { ... }`, one named operation and no operationName: it would run.
    let query = "mutation%20Drop%20%7B%20deleteShelf(name%3A%20%22shelves%2F2%22%2C%20force%3A%20true)%20%7D";
    let r = send("GET", &d.url(&format!("/graphql?query={query}")), &[], "").await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(d.backends.library_backend.calls("DeleteShelf"), 0);
    let shelf = graphql(
        &d.gw,
        "{ getShelf(name: \"shelves/2\") { name } }",
        json!({}),
    )
    .await;
    assert_eq!(shelf["data"]["getShelf"]["name"], "shelves/2", "{shelf}");
}

#[tokio::test]
async fn sse_client_disconnect_cancels_the_upstream_watch() {
    let d = demo().await;
    let mut stream = open_sse(&d, WATCH, json!({"name": "shelves/1"})).await;
    let (name, _) = next_sse(&mut stream).await.expect("an event");
    assert_eq!(name, "next");
    watchers_become(&d, 1).await;
    drop(stream);
    watchers_become(&d, 0).await;
}

#[tokio::test]
async fn on_shutdown_open_sockets_are_closed_with_1001_and_the_server_waits_for_them() {
    let backends = omnigate::demo::start().await.expect("backends");
    let config = omnigate::demo::gateway_config(&backends, "127.0.0.1:0".parse().expect("addr"));
    let mut running = run_gateway(config, "10s").await;
    let addr = running.addr;

    let (mut ws, _) = GraphqlWs::try_connect_at(addr, Some(TRANSPORT))
        .await
        .expect("handshake");
    ws.init(None).await;
    ws.subscribe("w", WATCH, json!({"name": "shelves/1"})).await;
    assert_eq!(event(&ws.recv().await, "next", "w")["kind"], "EXISTING");
    let backend = backends.library_backend.clone();
    assert!(eventually(|| backend.active_watchers() == 1).await);

    let _ = running.shutdown.take().expect("sender").send(());
    // The client hears why (1001 Going Away) instead of a dropped TCP connection...
    assert_eq!(
        ws.closed().await,
        (1001, "Server shutting down".to_string())
    );
    drop(ws);
    // ...the upstream stream is cancelled, and the server returns once the socket is closed.
    assert!(eventually(|| backend.active_watchers() == 0).await);
    tokio::time::timeout(std::time::Duration::from_secs(10), running.run)
        .await
        .expect("run returned after the socket closed")
        .expect("run task")
        .expect("run result");
}
