//! GraphQL ingress against the example services: schema, queries across services, joins,
//! HTTP-backed fields, GraphQL over HTTP status codes and media types, limits, errors.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{demo, send, Demo, Reply};

async fn gql(d: &Demo, query: &str, variables: Value) -> Reply {
    send(
        "POST",
        &d.url("/graphql"),
        &[("content-type", "application/json")],
        json!({ "query": query, "variables": variables }).to_string(),
    )
    .await
}

#[tokio::test]
async fn generated_sdl_matches_the_checked_in_schema() {
    let d = demo().await;
    let sdl = omnigate::ingress::graphql::sdl(&d.gw.gateway).expect("schema builds");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/demo.graphql");
    if std::env::var_os("OMNIGATE_BLESS").is_some() {
        std::fs::write(path, &sdl).expect("write schema/demo.graphql");
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == sdl,
        "schema/demo.graphql is out of date; regenerate it with `OMNIGATE_BLESS=1 cargo test --test e2e generated_sdl`"
    );
}

#[tokio::test]
async fn one_query_reads_two_grpc_services_and_the_http_service() {
    let d = demo().await;
    let r = gql(
        &d,
        r#"query($name: String!) {
            getBook(name: $name) { title pageCount genre createTime author { displayName } reviews { rating } }
            getAuthor(id: "2") { displayName }
        }"#,
        json!({ "name": "shelves/1/books/1" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert!(body.get("errors").is_none(), "{body}");
    let book = &body["data"]["getBook"];
    assert_eq!(book["title"], "The Glass Orchard");
    assert_eq!(book["pageCount"], "412", "int64 is a string");
    assert_eq!(book["genre"], "FICTION");
    assert_eq!(book["author"]["displayName"], "Ada Lindqvist");
    assert_eq!(book["reviews"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["data"]["getAuthor"]["displayName"], "Tomas Okafor");
}

#[tokio::test]
async fn a_join_over_many_parents_makes_one_batch_call() {
    let d = demo().await;
    let before_batch = d.backends.authors_backend.calls("BatchGetAuthors");
    let before_single = d.backends.authors_backend.calls("GetAuthor");
    let r = gql(&d, r#"{ listBooks(parent: "shelves/1", includeDrafts: true) { books { title author { displayName } } } }"#, json!({})).await;
    let body = r.json();
    let books = body["data"]["listBooks"]["books"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(books.len(), 3, "{body}");
    assert!(
        books.iter().all(|b| b["author"]["displayName"].is_string()),
        "{body}"
    );
    assert_eq!(
        d.backends.authors_backend.calls("BatchGetAuthors") - before_batch,
        1
    );
    assert_eq!(
        d.backends.authors_backend.calls("GetAuthor") - before_single,
        0
    );
}

#[tokio::test]
async fn fields_of_several_services_resolve_concurrently() {
    let d = demo().await;
    d.backends
        .library_backend
        .set_delay(Duration::from_millis(300));
    d.backends
        .authors_backend
        .set_delay(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let r = gql(&d, r#"{ getShelf(name: "shelves/1") { name } getAuthor(id: "1") { id } listShelves { shelves { name } } }"#, json!({})).await;
    let elapsed = started.elapsed();
    assert_eq!(r.json()["data"]["getShelf"]["name"], "shelves/1");
    // Three calls of 300 ms each: sequential would be >= 900 ms. This bounds behaviour
    // (concurrency), not speed: any machine finishes concurrent calls well under 900 ms.
    assert!(
        elapsed < Duration::from_millis(900),
        "calls ran one after another: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_failing_service_leaves_the_other_fields_in_place() {
    let d = demo().await;
    let r = gql(
        &d,
        r#"{ getShelf(name: "shelves/100") { name } getAuthor(id: "1") { displayName } }"#,
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["data"]["getAuthor"]["displayName"], "Ada Lindqvist");
    assert!(body["data"]["getShelf"].is_null());
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "NOT_FOUND", "{body}");
    assert_eq!(error["path"], json!(["getShelf"]));
}

#[tokio::test]
async fn mutations_create_through_grpc_and_report_invalid_arguments() {
    let d = demo().await;
    let r = gql(
        &d,
        r#"mutation { createBook(parent: "shelves/2", book: { title: "Dune", authorId: "2", pageCount: 412, labels: [{key: "k", value: "v"}] }) { name title pageCount labels { key value } } }"#,
        json!({}),
    )
    .await;
    let body = r.json();
    assert_eq!(body["data"]["createBook"]["title"], "Dune", "{body}");
    assert_eq!(body["data"]["createBook"]["pageCount"], "412");
    assert_eq!(
        body["data"]["createBook"]["labels"],
        json!([{"key": "k", "value": "v"}])
    );

    let r = gql(
        &d,
        r#"mutation { createBook(parent: "shelves/2", book: { title: "" }) { name } }"#,
        json!({}),
    )
    .await;
    let body = r.json();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{body}"
    );
}

#[tokio::test]
async fn oneof_members_set_together_are_rejected_naming_both() {
    let d = demo().await;
    let r = gql(
        &d,
        r#"mutation { createBook(parent: "shelves/2", book: { title: "X", paperback: {coverFinish: "matte"}, ebook: {fileFormat: "epub"} }) { name } }"#,
        json!({}),
    )
    .await;
    let body = r.json();
    let message = body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("paperback") && message.contains("ebook"),
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn graphql_over_http_status_codes_and_media_types() {
    let d = demo().await;
    let url = d.url("/graphql");
    let accept = ("accept", "application/graphql-response+json");
    let json_ct = ("content-type", "application/json");

    // Syntax error: 400 with graphql-response+json, 200 with application/json.
    let bad = json!({ "query": "{ getBook(" }).to_string();
    let r = send("POST", &url, &[json_ct, accept], bad.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("content-type"),
        Some("application/graphql-response+json")
    );
    let r = send("POST", &url, &[json_ct], bad).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json()["errors"].is_array());

    // Unknown field: a validation error, before execution.
    let r = send(
        "POST",
        &url,
        &[json_ct, accept],
        json!({ "query": "{ nope }" }).to_string(),
    )
    .await;
    assert_eq!(r.status, 400);

    // Wrong argument type.
    let r = send(
        "POST",
        &url,
        &[json_ct, accept],
        json!({ "query": "{ getShelf(name: 5) { name } }" }).to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // GET for queries.
    let r = send(
        "GET",
        &format!("{url}?query=%7BlistShelves%7Bshelves%7Bname%7D%7D%7D"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["data"]["listShelves"]["shelves"][0]["name"],
        "shelves/1"
    );

    // A mutation over GET is refused.
    let r = send(
        "GET",
        &format!("{url}?query=mutation%7BdeleteShelf(name%3A%22shelves%2F2%22)%7D"),
        &[accept],
        "",
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));

    // Malformed JSON body and unsupported content type.
    let r = send("POST", &url, &[json_ct], "{not json").await;
    assert_eq!(r.status, 400);
    let r = send(
        "POST",
        &url,
        &[("content-type", "text/plain")],
        "{ listShelves { shelves { name } } }",
    )
    .await;
    assert_eq!(r.status, 415);

    // GraphiQL for browsers.
    let r = send("GET", &url, &[("accept", "text/html")], "").await;
    assert_eq!(r.status, 200);
    assert!(r.text().to_lowercase().contains("graphiql"));
}

#[tokio::test]
async fn limits_are_enforced_before_any_upstream_call() {
    let d = demo().await;
    let before = d.backends.library_backend.calls("ListShelves");
    let aliases: String = (0..40)
        .map(|i| format!("a{i}: listShelves {{ shelves {{ name }} }} "))
        .collect();
    let r = gql(&d, &format!("{{ {aliases} }}"), json!({})).await;
    let body = r.json();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit"),
        "{body}"
    );
    assert_eq!(
        d.backends.library_backend.calls("ListShelves"),
        before,
        "no upstream call for a refused operation"
    );

    let deep = "{ getBook(name: \"shelves/1/books/1\") { chapters { sections { sections { sections { sections { sections { sections { sections { sections { sections { sections { sections { title } } } } } } } } } } } } } }";
    let r = gql(&d, deep, json!({})).await;
    assert!(r.json()["errors"].is_array(), "{}", r.text());

    let huge = format!(
        "{{ listShelves {{ shelves {{ name }} }} }} #{}",
        "x".repeat(40_000)
    );
    let r = gql(&d, &huge, json!({})).await;
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("bytes"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn authorization_and_request_id_headers_reach_every_upstream_call() {
    let d = demo().await;
    let r = send(
        "POST",
        &d.url("/graphql"),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer t0k3n"),
            ("x-request-id", "gql-42"),
        ],
        json!({ "query": "{ getAuthor(id: \"1\") { id } }" }).to_string(),
    )
    .await;
    assert_eq!(r.status, 200);
    let metadata = d
        .backends
        .authors_backend
        .last_metadata()
        .expect("a call was made");
    assert_eq!(
        metadata.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer t0k3n")
    );
    assert_eq!(
        metadata.get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("gql-42")
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_any_upstream_call() {
    let d = crate::support::demo_with(|c| c.limits.max_body_bytes = 200).await;
    let before = d.backends.library_backend.calls("ListShelves");
    let padding = " ".repeat(300);
    let query = json!({ "query": format!("{{ listShelves {{ shelves {{ name }} }} }}{padding}") })
        .to_string();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/graphql-response+json"),
    ];

    let r = send("POST", &d.url("/graphql"), &headers, query.clone()).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        r.json()["errors"][0]["extensions"]["reason"],
        "PAYLOAD_TOO_LARGE"
    );

    let chunks = query
        .into_bytes()
        .chunks(64)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let r = crate::support::send_chunked("POST", &d.url("/graphql"), &headers, chunks).await;
    assert_eq!(r.status, 413, "{}", r.text());

    assert_eq!(d.backends.library_backend.calls("ListShelves"), before);
    let ok = gql(&d, "{ listShelves { shelves { name } } }", json!({})).await;
    assert_eq!(
        ok.json()["data"]["listShelves"]["shelves"][0]["name"],
        "shelves/1"
    );
}

#[tokio::test]
async fn fields_selected_through_fragments_aliases_and_directives_all_arrive() {
    // Without joins or HTTP fields on Book, a reply is read for the selected keys only: every
    // way of selecting a field must still bring it.
    let d = crate::support::demo_with(|c| {
        c.graphql.joins.clear();
        c.graphql.http_fields.clear();
    })
    .await;
    let r = gql(
        &d,
        r#"query($name: String!, $no: Boolean!) {
            getBook(name: $name) {
                t: title
                ...Counts
                ... on Book { genre }
                isbn13 @include(if: $no)
                edition @skip(if: $no)
            }
        }
        fragment Counts on Book { pageCount labels { key value } }"#,
        json!({ "name": "shelves/1/books/1", "no": false }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert!(body.get("errors").is_none(), "{body}");
    let book = &body["data"]["getBook"];
    assert_eq!(book["t"], "The Glass Orchard", "{body}");
    assert_eq!(book["pageCount"], "412", "{body}");
    assert_eq!(book["genre"], "FICTION", "{body}");
    assert!(
        book["labels"].as_array().is_some_and(|l| !l.is_empty()),
        "{body}"
    );
    assert!(book.get("isbn13").is_none(), "{body}");
    assert!(book["edition"].is_number(), "{body}");
}
