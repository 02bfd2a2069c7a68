//! REST → gRPC transcoding against the example Library service, over real sockets:
//! HttpRule bindings, query parameters, proto3 JSON, HttpBody, client streaming, metadata,
//! deadlines, status mapping and the rejection of bad input. Server streams are in
//! `streaming.rs`.

use serde_json::{json, Value};

use crate::support::{demo, demo_with, get, post_json, send, Demo, Reply};

const JSON: (&str, &str) = ("content-type", "application/json");
const NDJSON: (&str, &str) = ("content-type", "application/x-ndjson");

async fn send_json(method: &str, url: &str, body: &str) -> Reply {
    send(method, url, &[JSON], body.to_string()).await
}

/// The first `google.rpc.BadRequest` field violation of an error body: (field, description).
fn violation(reply: &Reply) -> (String, String) {
    let body = reply.json();
    let detail = body["details"]
        .as_array()
        .and_then(|details| {
            details
                .iter()
                .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        })
        .unwrap_or_else(|| panic!("no BadRequest detail in {body}"));
    let v = &detail["fieldViolations"][0];
    (
        v["field"].as_str().unwrap_or_default().to_string(),
        v["description"].as_str().unwrap_or_default().to_string(),
    )
}

/// Assert a 400 whose BadRequest names `field` and whose message contains `part`.
#[track_caller]
fn assert_bad_request(reply: &Reply, field: &str, part: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["code"], 3, "{body}");
    let (got_field, description) = violation(reply);
    assert_eq!(got_field, field, "{body}");
    assert!(
        description.contains(part) && reply.error_message().contains(part),
        "`{part}` missing from {body}"
    );
}

fn titles(list: &Value) -> Vec<String> {
    list["books"]
        .as_array()
        .map(|books| {
            books
                .iter()
                .map(|b| b["title"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The process is still serving: a good request after a rejected one succeeds.
async fn assert_still_serving(d: &Demo) {
    let r = get(&d.url("/v1/shelves/1/books/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["title"], "The Glass Orchard");
}

// ---------------------------------------------------------------------------------------------
// 1. Bindings.

#[tokio::test]
async fn get_with_a_nested_path_variable_returns_the_book_as_proto3_json() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/1/books/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let book = r.json();
    assert_eq!(book["name"], "shelves/1/books/1");
    assert_eq!(book["title"], "The Glass Orchard");
    assert_eq!(book["authorId"], "1", "lowerCamelCase names");
    assert!(book["pageCount"].is_string(), "int64 as a string: {book}");
    assert!(r.header("x-request-id").is_some());

    let other = get(&d.url("/v1/shelves/2/books/2")).await;
    assert_eq!(other.json()["title"], "The Quiet Hive");
}

#[tokio::test]
async fn a_path_variable_that_matches_no_resource_reaches_the_backend_and_is_a_404() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/1/books/99")).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.error_message(), "Book shelves/1/books/99 not found");
    assert_eq!(d.backends.library_backend.calls("GetBook"), 1);
}

#[tokio::test]
async fn patch_binds_the_dotted_path_variable_and_the_book_body_and_honours_update_mask() {
    let d = demo().await;
    let r = send_json(
        "PATCH",
        &d.url("/v1/shelves/1/books/1?update_mask=title"),
        r#"{"title": "The Glass Orchard, Revised", "authorId": "3"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let book = r.json();
    assert_eq!(book["name"], "shelves/1/books/1", "book.name from the path");
    assert_eq!(book["title"], "The Glass Orchard, Revised");
    assert_eq!(book["authorId"], "1", "not in update_mask, so unchanged");

    let stored = get(&d.url("/v1/shelves/1/books/1")).await.json();
    assert_eq!(stored["title"], "The Glass Orchard, Revised");
    assert_eq!(stored["authorId"], "1");
}

#[tokio::test]
async fn patch_update_mask_takes_several_paths_in_json_or_proto_spelling() {
    let d = demo().await;
    let r = send_json(
        "PATCH",
        &d.url("/v1/shelves/1/books/2?update_mask=title,pageCount"),
        r#"{"title": "Ice", "pageCount": "300", "authorId": "3"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let book = r.json();
    assert_eq!(
        (&book["title"], &book["pageCount"], &book["authorId"]),
        (&json!("Ice"), &json!("300"), &json!("2"))
    );
}

#[tokio::test]
async fn patch_rejects_query_parameters_inside_the_body_bound_field() {
    let d = demo().await;
    let r = send_json(
        "PATCH",
        &d.url("/v1/shelves/1/books/1?book.title=Sneaky"),
        r#"{"title": "x"}"#,
    )
    .await;
    assert_bad_request(&r, "book.title", "bound by the request path or body");
    assert_eq!(d.backends.library_backend.calls("UpdateBook"), 0);
}

#[tokio::test]
async fn post_with_body_book_creates_the_book_on_the_shelf_from_the_path() {
    let d = demo().await;
    let r = post_json(
        &d.url("/v1/shelves/1/books"),
        json!({"title": "Dune", "authorId": "2", "pageCount": "412"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let book = r.json();
    assert_eq!(book["name"], "shelves/1/books/4");
    assert_eq!(book["state"], "DRAFT");
    assert_eq!(book["pageCount"], "412");
    let fetched = get(&d.url("/v1/shelves/1/books/4")).await;
    assert_eq!(fetched.json()["title"], "Dune");
}

#[tokio::test]
async fn post_with_body_book_takes_book_id_from_the_query() {
    let d = demo().await;
    let r = post_json(
        &d.url("/v1/shelves/2/books?book_id=atlas-2"),
        json!({"title": "Second Atlas"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "shelves/2/books/atlas-2");
}

#[tokio::test]
async fn the_additional_binding_post_v1_books_takes_the_whole_request_as_the_body() {
    let d = demo().await;
    let r = post_json(
        &d.url("/v1/books"),
        json!({"parent": "shelves/2", "book": {"title": "Rivers Again"}, "bookId": "rivers"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "shelves/2/books/rivers");
    assert_eq!(d.backends.library_backend.calls("CreateBook"), 1);

    // body: "*" leaves nothing for the query.
    let r = post_json(
        &d.url("/v1/books?parent=shelves/1"),
        json!({"book": {"title": "x"}}),
    )
    .await;
    assert_bad_request(&r, "parent", "query parameters are not allowed here");
    assert_eq!(d.backends.library_backend.calls("CreateBook"), 1);
}

#[tokio::test]
async fn the_custom_verb_publish_moves_a_draft_to_published_and_refuses_twice() {
    let d = demo().await;
    let r = post_json(
        &d.url("/v1/shelves/1/books/3:publish"),
        json!({"publishTime": "2024-05-01T12:00:00Z"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let book = r.json();
    assert_eq!(book["state"], "PUBLISHED");
    assert_eq!(book["publishTime"], "2024-05-01T12:00:00Z");

    // An empty body is the empty request message.
    let again = send("POST", &d.url("/v1/shelves/1/books/3:publish"), &[], "").await;
    assert_eq!(again.status, 400, "{}", again.text());
    assert_eq!(again.json()["code"], 9, "FAILED_PRECONDITION");
}

/// Like grpc-gateway, a `:verb` no template has stays part of the last segment, so the path
/// is a book path that only knows GET, PATCH and DELETE.
#[tokio::test]
async fn an_unknown_custom_verb_never_reaches_the_publish_method() {
    let d = demo().await;
    let r = send_json("POST", &d.url("/v1/shelves/1/books/3:burn"), "{}").await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("DELETE, GET, HEAD, PATCH"));
    assert_eq!(d.backends.library_backend.calls("PublishBook"), 0);
    assert_eq!(
        get(&d.url("/v1/shelves/1/books/3")).await.json()["state"],
        "DRAFT"
    );
}

#[tokio::test]
async fn response_body_stats_returns_only_the_stats_object() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/1/stats")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let stats = r.json();
    assert_eq!(
        stats,
        json!({
            "bookCount": 3,
            "publishedCount": 2,
            "totalPages": "764",
            "genreCounts": {"FICTION": 2, "SCIENCE_FICTION": 1},
        })
    );
    assert!(stats.get("name").is_none() && stats.get("stats").is_none());
}

#[tokio::test]
async fn the_custom_http_method_search_is_routed_with_its_json_body() {
    let d = demo().await;
    let r = send_json("SEARCH", &d.url("/v1/books:search"), r#"{"query": "ICE"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(titles(&r.json()), ["Stars Beneath the Ice"]);

    // GET on the same path is not allowed, and says what is.
    let r = get(&d.url("/v1/books:search")).await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("SEARCH"));
    assert_eq!(d.backends.library_backend.calls("SearchBooks"), 1);
}

#[tokio::test]
async fn auto_mapping_posts_the_json_body_as_the_whole_request() {
    let d = demo().await;
    let r = post_json(
        &d.url("/library.v1.Library/GetBook"),
        json!({"name": "shelves/1/books/2"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["title"], "Stars Beneath the Ice");

    // The query cannot add fields: the body is the whole request.
    let r = post_json(
        &d.url("/library.v1.Library/GetBook?name=shelves/1/books/1"),
        json!({}),
    )
    .await;
    assert_bad_request(&r, "name", "query parameters are not allowed here");
    assert_eq!(d.backends.library_backend.calls("GetBook"), 1);
}

#[tokio::test]
async fn auto_mapping_only_accepts_post() {
    let d = demo().await;
    let r = get(&d.url("/library.v1.Library/GetBook")).await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("POST"));
}

#[tokio::test]
async fn auto_mapping_can_be_turned_off() {
    let d = demo_with(|c| c.transcoding.auto_mapping = false).await;
    let r = post_json(
        &d.url("/library.v1.Library/GetBook"),
        json!({"name": "shelves/1/books/2"}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(d.backends.library_backend.calls("GetBook"), 0);
    // The annotated bindings still work.
    assert_still_serving(&d).await;
}

#[tokio::test]
async fn an_extra_binding_from_the_config_reaches_the_method() {
    let d = demo_with(|c| {
        c.routes.push(omnigate::config::RouteConfig {
            grpc: "library.v1.Library/GetBook".into(),
            get: Some("/v2/{name=shelves/*/books/*}".into()),
            ..Default::default()
        })
    })
    .await;
    let r = get(&d.url("/v2/shelves/2/books/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["title"], "A Brief Atlas of Rivers");
    assert_still_serving(&d).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Query parameters.

/// (query, expected titles) on `GET /v1/shelves/1/books`.
#[tokio::test]
async fn query_parameters_bind_every_kind_of_field() {
    let d = demo().await;
    let cases: &[(&str, &[&str])] = &[
        ("", &["The Glass Orchard", "Stars Beneath the Ice"]),
        // nested message field, proto and JSON spelling; bool
        (
            "filter.author_id=1&include_drafts=true",
            &["The Glass Orchard", "Notes Toward a Lighthouse"],
        ),
        ("filter.authorId=2", &["Stars Beneath the Ice"]),
        ("filter.title_contains=glass", &["The Glass Orchard"]),
        // repeated
        ("tags=space&tags=award-winner", &["Stars Beneath the Ice"]),
        ("tags=classic&tags=space", &[]),
        // enum by name and by number
        ("genre=SCIENCE_FICTION", &["Stars Beneath the Ice"]),
        (
            "genre=1&include_drafts=1",
            &["The Glass Orchard", "Notes Toward a Lighthouse"],
        ),
        // int64
        ("min_pages=300", &["The Glass Orchard"]),
        ("minPages=1000", &[]),
        // Timestamp (RFC 3339)
        (
            "published_after=2023-11-14T22:17:00Z",
            &["Stars Beneath the Ice"],
        ),
        (
            "published_after=2023-11-14T23:17:00%2B01:00",
            &["Stars Beneath the Ice"],
        ),
        // wrapper
        ("page_size=1", &["The Glass Orchard"]),
        // map
        ("labels[series]=orchard", &["The Glass Orchard"]),
        ("labels%5Blang%5D=en&labels%5Bseries%5D=none", &[]),
        // percent-encoding and `+` as a space
        ("filter.title_contains=the+glass", &["The Glass Orchard"]),
        (
            "filter.title_contains=beneath%20the",
            &["Stars Beneath the Ice"],
        ),
    ];
    for (query, want) in cases {
        let r = get(&d.url(&format!("/v1/shelves/1/books?{query}"))).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        assert_eq!(titles(&r.json()), *want, "{query}");
    }
}

#[tokio::test]
async fn a_wrapper_query_parameter_is_sent_as_present() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/1/books?page_size=1")).await;
    let page = r.json();
    assert_eq!(page["nextPageToken"], "1");
    assert_eq!(page["totalSize"], 2);
    // -1 reaches the backend (the wrapper is set), which refuses it.
    let r = get(&d.url("/v1/shelves/1/books?page_size=-1")).await;
    assert_bad_request(&r, "page_size", "must not be negative");
}

/// (query, parameter named in the error, part of the reason)
#[tokio::test]
async fn bad_query_parameters_are_400s_naming_the_parameter_and_never_reach_the_backend() {
    let d = demo().await;
    let cases = [
        ("bogus=1", "bogus", "unknown query parameter"),
        ("filter.bogus=1", "filter.bogus", "unknown query parameter"),
        ("parent=shelves/2", "parent", "bound by the request path"),
        ("genre=COOKING", "genre", "unknown value \"COOKING\""),
        ("include_drafts=maybe", "include_drafts", "not a valid bool"),
        ("min_pages=many", "min_pages", "not a valid int64"),
        (
            "min_pages=99999999999999999999",
            "min_pages",
            "out of range",
        ),
        (
            "page_size=3000000000",
            "page_size",
            "out of range for int32",
        ),
        ("published_after=yesterday", "published_after", "yesterday"),
        ("page_token=a&page_token=b", "page_token", "more than once"),
        ("filter=x", "filter", "cannot be given as text"),
        ("labels=x", "labels", "map field"),
        ("labels[a=b", "labels[a", "malformed map entry"),
        ("tags=%FF", "tags", "not valid UTF-8"),
    ];
    for (query, field, part) in cases {
        let r = get(&d.url(&format!("/v1/shelves/1/books?{query}"))).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        let (got, description) = violation(&r);
        assert_eq!(got, field, "{query}: {}", r.text());
        assert!(description.contains(part), "{query}: {description}");
    }
    assert_eq!(d.backends.library_backend.calls("ListBooks"), 0);
    assert_still_serving(&d).await;
}

/// `+` is a space by default (HTML forms, grpc-gateway); `query_unescape_plus: false` keeps
/// it a plus sign, as Envoy does, so an RFC 3339 offset can be sent unescaped.
#[tokio::test]
async fn a_plus_in_the_query_is_a_space_unless_configured_to_stay_a_plus() {
    let query = "/v1/shelves/1/books?published_after=2023-11-14T23:17:00+01:00";
    let d = demo().await;
    let r = get(&d.url(query)).await;
    assert_bad_request(&r, "published_after", "2023-11-14T23:17:00 01:00");
    let d = demo_with(|c| c.transcoding.query_unescape_plus = false).await;
    let r = get(&d.url(query)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(titles(&r.json()), ["Stars Beneath the Ice"]);
}

#[tokio::test]
async fn ignore_unknown_query_parameters_skips_only_unknown_names() {
    let d = demo_with(|c| c.transcoding.ignore_unknown_query_parameters = true).await;
    let r = get(&d.url("/v1/shelves/1/books?utm_source=mail&min_pages=300")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(titles(&r.json()), ["The Glass Orchard"]);
    let r = get(&d.url("/v1/shelves/1/books?min_pages=many")).await;
    assert_bad_request(&r, "min_pages", "not a valid int64");
}

// ---------------------------------------------------------------------------------------------
// 3. Binding precedence.

#[tokio::test]
async fn path_value_overrides_the_same_field_in_the_body_for_patch() {
    let d = demo().await;
    let r = send_json(
        "PATCH",
        &d.url("/v1/shelves/2/books/1?update_mask=title"),
        r#"{"name": "shelves/2/books/2", "title": "Renamed"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "shelves/2/books/1");
    assert_eq!(
        get(&d.url("/v1/shelves/2/books/1")).await.json()["title"],
        "Renamed"
    );
    assert_eq!(
        get(&d.url("/v1/shelves/2/books/2")).await.json()["title"],
        "The Quiet Hive",
        "the book named in the body is untouched"
    );
}

#[tokio::test]
async fn path_value_overrides_the_same_field_in_a_whole_body() {
    let d = demo().await;
    let r = post_json(
        &d.url("/v1/shelves/1/books/3:publish"),
        json!({"name": "shelves/2/books/1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "shelves/1/books/3");
}

// ---------------------------------------------------------------------------------------------
// 4. Proto3 JSON.

#[tokio::test]
async fn output_is_proto3_json_with_camel_case_string_int64_enum_names_and_rfc3339() {
    let d = demo().await;
    let book = get(&d.url("/v1/shelves/1/books/1")).await.json();
    assert_eq!(book["authorId"], "1");
    assert_eq!(book["pageCount"], "412");
    assert_eq!(book["isbn13"], "9780000000017", "uint64 as a string");
    assert_eq!(book["edition"], 2, "uint32 as a number");
    assert_eq!(book["genre"], "FICTION");
    assert_eq!(book["state"], "PUBLISHED");
    assert_eq!(book["createTime"], "2023-11-14T22:15:00Z");
    assert_eq!(book["readTime"], "32400s");
    assert_eq!(book["price"], 18.5, "DoubleValue unwrapped");
    assert_eq!(book["paperback"]["heightMm"], 198);
    assert_eq!(book["checksum"], "3q2+7w==", "bytes as base64");
    assert!(book.get("ebook").is_none(), "unset oneof member omitted");
    assert!(book.get("page_count").is_none());
    let draft = get(&d.url("/v1/shelves/1/books/3")).await.json();
    assert!(
        draft.get("illustrated").is_none(),
        "defaults omitted: {draft}"
    );
    assert!(draft.get("isbn13").is_none(), "defaults omitted: {draft}");
}

#[tokio::test]
async fn input_accepts_proto_names_and_json_names() {
    let d = demo().await;
    let r = post_json(
        &d.url("/v1/shelves/1/books"),
        json!({
            "title": "Mixed",
            "author_id": "2",
            "pageCount": 120,
            "weight_grams": 300.5,
            "genre": 4,
            "read_time": "3600s",
            "ebook": {"file_format": "pdf", "sizeBytes": "1024"},
            "labels": {"lang": "de"},
            "price": 5,
        }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let book = r.json();
    assert_eq!(book["authorId"], "2");
    assert_eq!(book["pageCount"], "120");
    assert_eq!(book["weightGrams"], 300.5);
    assert_eq!(book["genre"], "FANTASY", "enum number in, name out");
    assert_eq!(book["readTime"], "3600s");
    assert_eq!(
        book["ebook"],
        json!({"fileFormat": "pdf", "sizeBytes": "1024"})
    );
    assert_eq!(book["labels"], json!({"lang": "de"}));
    assert_eq!(book["price"], 5.0);
}

#[tokio::test]
async fn use_proto_names_renders_snake_case_fields() {
    let d = demo_with(|c| c.transcoding.use_proto_names = true).await;
    let book = get(&d.url("/v1/shelves/1/books/1")).await.json();
    assert_eq!(book["author_id"], "1");
    assert_eq!(book["page_count"], "412");
    assert_eq!(book["create_time"], "2023-11-14T22:15:00Z");
    assert_eq!(book["paperback"]["height_mm"], 198);
    assert!(book.get("authorId").is_none(), "{book}");
    let stats = get(&d.url("/v1/shelves/1/stats")).await.json();
    assert_eq!(stats["book_count"], 3);
}

#[tokio::test]
async fn emit_unpopulated_renders_fields_at_their_default() {
    let d = demo_with(|c| c.transcoding.emit_unpopulated = true).await;
    let draft = get(&d.url("/v1/shelves/1/books/3")).await.json();
    assert_eq!(draft["illustrated"], false, "{draft}");
    assert_eq!(draft["isbn13"], "0");
    assert_eq!(draft["edition"], 0);
    assert_eq!(draft["checksum"], "");
    assert_eq!(draft["chapters"], json!([]));
    assert_eq!(draft["catalogueCode"], "");
    let list = get(&d.url("/v1/shelves/1/books?tags=none")).await.json();
    assert_eq!(
        list,
        json!({"books": [], "nextPageToken": "", "totalSize": 0})
    );
}

#[tokio::test]
async fn an_unknown_json_field_is_a_400_naming_its_path() {
    let d = demo().await;
    let cases = [
        (r#"{"title": "x", "bogus": 1}"#, "bogus"),
        (
            r#"{"title": "x", "paperback": {"spine": "red"}}"#,
            "paperback.spine",
        ),
        (
            r#"{"title": "x", "chapters": [{"title": "a"}, {"title": "b", "pages": 3}]}"#,
            "chapters[1].pages",
        ),
    ];
    for (body, field) in cases {
        let r = send_json("POST", &d.url("/v1/shelves/1/books"), body).await;
        assert_bad_request(&r, field, "unknown field");
    }
    let r = post_json(
        &d.url("/v1/books"),
        json!({"parent": "shelves/1", "book": {"title": "x", "colour": "red"}}),
    )
    .await;
    assert_bad_request(&r, "book.colour", "unknown field");
    assert_eq!(d.backends.library_backend.calls("CreateBook"), 0);
}

#[tokio::test]
async fn ignore_unknown_fields_drops_them_and_creates_the_book() {
    let d = demo_with(|c| c.transcoding.ignore_unknown_fields = true).await;
    let r = send_json(
        "POST",
        &d.url("/v1/shelves/1/books"),
        r#"{"title": "Tolerant", "bogus": 1, "paperback": {"spine": "red", "heightMm": 5}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let book = r.json();
    assert_eq!(book["title"], "Tolerant");
    assert_eq!(book["paperback"], json!({"heightMm": 5}));
    assert!(book.get("bogus").is_none());
}

// ---------------------------------------------------------------------------------------------
// 5. HttpBody.

#[tokio::test]
async fn get_cover_returns_the_raw_bytes_with_their_content_type() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/1/books/1/cover")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
    assert!(r.text().starts_with("<svg"), "{}", r.text());
    assert!(r.text().contains("Orchard"));

    let none = get(&d.url("/v1/shelves/1/books/2/cover")).await;
    assert_eq!(none.status, 404, "{}", none.text());
    assert_eq!(none.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn put_cover_stores_a_raw_body_of_any_content_type_and_get_returns_it() {
    let d = demo().await;
    let png: Vec<u8> = [
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0xfe,
    ]
    .into_iter()
    .chain(std::iter::repeat_n(0u8, 100))
    .collect();
    let r = send(
        "PUT",
        &d.url("/v1/shelves/1/books/2/cover"),
        &[("content-type", "image/png")],
        png.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"name": "shelves/1/books/2", "contentType": "image/png", "sizeBytes": "111"})
    );
    let back = get(&d.url("/v1/shelves/1/books/2/cover")).await;
    assert_eq!(back.header("content-type"), Some("image/png"));
    assert_eq!(back.body.as_ref(), png.as_slice());

    // A JSON-looking body is not parsed either: it is the cover.
    let r = send(
        "PUT",
        &d.url("/v1/shelves/1/books/2/cover"),
        &[("content-type", "application/json")],
        "{not json",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let back = get(&d.url("/v1/shelves/1/books/2/cover")).await;
    assert_eq!(back.header("content-type"), Some("application/json"));
    assert_eq!(back.text(), "{not json");

    // Without a content type it is stored as octet-stream.
    let r = send("PUT", &d.url("/v1/shelves/1/books/2/cover"), &[], "raw").await;
    assert_eq!(r.json()["contentType"], "application/octet-stream");
}

// ---------------------------------------------------------------------------------------------
// 7. Client and bidi streaming (server streams are in streaming.rs).

#[tokio::test]
async fn client_streaming_import_reads_one_book_per_ndjson_line() {
    let d = demo().await;
    let body = "{\"book\": {\"title\": \"One\"}}\n\n{\"book\": {\"title\": \"Two\"}, \"bookId\": \"two\"}\n  \n{\"book\": {\"title\": \"Three\"}}";
    let r = send(
        "POST",
        &d.url("/v1/shelves/2/books:import"),
        &[NDJSON],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "importedCount": 3,
            "names": ["shelves/2/books/3", "shelves/2/books/two", "shelves/2/books/4"],
        })
    );
    assert_eq!(
        get(&d.url("/v1/shelves/2/books/two")).await.json()["title"],
        "Two"
    );
}

#[tokio::test]
async fn client_streaming_import_of_megabytes_arrives_whole_past_the_backends_flow_control_window()
{
    // 4,000 books of ~1 KB: several times HTTP/2's initial stream window, so the gateway has to
    // wait for the backend's WINDOW_UPDATEs while it forwards the lines.
    let d = demo_with(|config| config.limits.max_body_bytes = 16 * 1024 * 1024).await;
    let padding = "x".repeat(1000);
    let count = 4000;
    let body: String = (0..count)
        .map(|i| {
            format!("{{\"book\": {{\"title\": \"Book {i}\", \"subtitle\": \"{padding}\"}}}}\n")
        })
        .collect();
    assert!(body.len() > 4 * 1024 * 1024);
    let r = send(
        "POST",
        &d.url("/v1/shelves/2/books:import"),
        &[NDJSON],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["importedCount"], count);
    let names = r.json()["names"].as_array().cloned().unwrap_or_default();
    assert_eq!(names.len(), count);
    let last = names
        .last()
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    let book = get(&d.url(&format!("/v1/{last}"))).await;
    assert_eq!(book.json()["title"], format!("Book {}", count - 1));
}

#[tokio::test]
async fn client_streaming_import_with_a_bad_line_is_a_400_naming_the_line() {
    let d = demo().await;
    // Blank lines are skipped but counted: the number is the line in the client's file.
    let cases = [
        (
            "{\"book\": {\"title\": \"Fine\"}}\n{\"book\": {\"title\": 5}}\n",
            "book.title",
            "line 2",
        ),
        (
            "{\"book\": {\"title\": \"Fine\"}}\n\n   \n{\"book\": {\"title\": 5}}\n",
            "book.title",
            "line 4",
        ),
        ("not json\n", "", "line 1"),
        (
            "{\"book\": {\"title\": \"Fine\"}}\n{\"book\": {\"title\": \"Also\"}}\n{\"bogus\": 1}\n",
            "bogus",
            "line 3",
        ),
    ];
    for (body, field, line) in cases {
        let r = send(
            "POST",
            &d.url("/v1/shelves/1/books:import"),
            &[NDJSON],
            body,
        )
        .await;
        assert_bad_request(&r, field, line);
    }
    assert_still_serving(&d).await;
}

/// Envoy's transcoder takes a client stream as one JSON array; its elements are forwarded
/// one by one, like NDJSON lines.
#[tokio::test]
async fn client_streaming_import_also_reads_a_json_array_of_messages() {
    let d = demo().await;
    let body = "[{\"book\": {\"title\": \"One, [really]\"}},\n {\"book\": {\"title\": \"Two\"}, \"bookId\": \"two\"}]\n";
    let r = send(
        "POST",
        &d.url("/v1/shelves/2/books:import"),
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"importedCount": 2, "names": ["shelves/2/books/3", "shelves/2/books/two"]})
    );
    assert_eq!(
        get(&d.url("/v1/shelves/2/books/3")).await.json()["title"],
        "One, [really]"
    );
    let cases = [
        (
            "[{\"book\": {}}, {\"book\": {\"title\": 5}}]",
            "book.title",
            "array element 2",
        ),
        (
            "[{\"book\": {}}, ]",
            "",
            "array element 2: malformed JSON array: an element is missing",
        ),
        (
            "[{\"book\": {}}, {}",
            "",
            "array element 2: malformed JSON array: the body ends before",
        ),
        ("[{\"book\": {}}] {}", "", "after the closing ']'"),
        (
            "[[]]",
            "",
            "array element 1: the request body must be a JSON object",
        ),
    ];
    for (body, field, part) in cases {
        let r = send(
            "POST",
            &d.url("/v1/shelves/1/books:import"),
            &[("content-type", "application/json")],
            body,
        )
        .await;
        assert_bad_request(&r, field, part);
    }
    assert_still_serving(&d).await;
}

#[tokio::test]
async fn client_streaming_import_refuses_a_non_ndjson_content_type() {
    let d = demo().await;
    let r = send(
        "POST",
        &d.url("/v1/shelves/1/books:import"),
        &[("content-type", "text/plain")],
        "{\"book\": {\"title\": \"x\"}}\n",
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(
        r.error_message().contains("application/x-ndjson"),
        "{}",
        r.text()
    );
    assert_eq!(d.backends.library_backend.calls("ImportBooks"), 0);
    assert_still_serving(&d).await;
}

#[tokio::test]
async fn client_streaming_import_refuses_query_parameters_before_calling_the_backend() {
    let d = demo().await;
    for body in ["", "{\"book\": {\"title\": \"x\"}}\n"] {
        let r = send(
            "POST",
            &d.url("/v1/shelves/1/books:import?dry_run=true"),
            &[NDJSON],
            body,
        )
        .await;
        assert_bad_request(&r, "dry_run", "query parameters are not allowed here");
    }
    assert_eq!(d.backends.library_backend.calls("ImportBooks"), 0);
}

#[tokio::test]
async fn client_streaming_import_over_the_body_limit_is_a_413_without_a_backend_call() {
    let d = demo_with(|c| c.limits.max_body_bytes = 100).await;
    let body = "{\"book\": {\"title\": \"x\"}}\n".repeat(20);
    let r = send(
        "POST",
        &d.url("/v1/shelves/1/books:import"),
        &[NDJSON],
        body,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["code"], 8);
    assert_eq!(d.backends.library_backend.calls("ImportBooks"), 0);
}

#[tokio::test]
async fn bidi_auto_mapping_annotate_books_answers_every_ndjson_line_with_one() {
    let d = demo().await;
    let body = concat!(
        "{\"name\": \"shelves/1/books/1\", \"note\": \"  lovely  prose \"}\n",
        "{\"name\": \"shelves/1/books/2\", \"note\": \"cold\"}\n",
        "{\"name\": \"shelves/1/books/1\", \"note\": \"read it twice\"}\n",
    );
    let r = send(
        "POST",
        &d.url("/library.v1.Library/AnnotateBooks"),
        &[NDJSON],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let answers: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(
        answers,
        [
            json!({"name": "shelves/1/books/1", "title": "The Glass Orchard", "note": "lovely  prose", "wordCount": 2, "noteCount": 1, "sequence": "1"}),
            json!({"name": "shelves/1/books/2", "title": "Stars Beneath the Ice", "note": "cold", "wordCount": 1, "noteCount": 1, "sequence": "2"}),
            json!({"name": "shelves/1/books/1", "title": "The Glass Orchard", "note": "read it twice", "wordCount": 3, "noteCount": 2, "sequence": "3"}),
        ]
    );
}

#[tokio::test]
async fn bidi_annotate_books_ends_with_an_error_object_when_the_backend_fails_mid_stream() {
    let d = demo().await;
    let body = concat!(
        "{\"name\": \"shelves/1/books/1\", \"note\": \"fine\"}\n",
        "{\"name\": \"shelves/1/books/99\", \"note\": \"lost\"}\n",
    );
    let r = send(
        "POST",
        &d.url("/library.v1.Library/AnnotateBooks"),
        &[NDJSON],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{}", r.text());
    assert_eq!(lines[0]["noteCount"], 1);
    assert_eq!(lines[1]["error"]["code"], 5);
    assert_eq!(
        lines[1]["error"]["details"][0]["@type"],
        "type.googleapis.com/google.rpc.ResourceInfo"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Metadata.

fn metadata_value(d: &Demo, key: &str) -> Option<String> {
    d.backends
        .library_backend
        .last_metadata()
        .expect("a call was recorded")
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test]
async fn authorization_and_x_request_id_reach_the_backend_as_metadata() {
    let d = demo().await;
    let r = send(
        "GET",
        &d.url("/v1/shelves/1/books/1"),
        &[
            ("authorization", "Bearer t0ken"),
            ("x-request-id", "req-42"),
            ("x-not-forwarded", "secret"),
            ("cookie", "session=1"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("req-42"));
    assert_eq!(
        metadata_value(&d, "authorization").as_deref(),
        Some("Bearer t0ken")
    );
    assert_eq!(
        metadata_value(&d, "x-request-id").as_deref(),
        Some("req-42")
    );
    assert_eq!(metadata_value(&d, "x-not-forwarded"), None);
    assert_eq!(metadata_value(&d, "cookie"), None);
}

#[tokio::test]
async fn a_request_without_x_request_id_gets_a_generated_one_shared_with_the_backend() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-request-id").expect("generated id").to_string();
    assert!(id.len() >= 16, "{id}");
    assert_eq!(metadata_value(&d, "x-request-id"), Some(id.clone()));
    let other = get(&d.url("/v1/shelves/1")).await;
    assert_ne!(
        other.header("x-request-id"),
        Some(id.as_str()),
        "unique per request"
    );
}

#[tokio::test]
async fn only_allowlisted_headers_are_forwarded_as_metadata() {
    let d = demo_with(|c| c.transcoding.forward_headers = vec!["X-Tenant".into()]).await;
    let r = send(
        "GET",
        &d.url("/v1/shelves/1"),
        &[("x-tenant", "acme"), ("x-other", "no")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(metadata_value(&d, "x-tenant").as_deref(), Some("acme"));
    assert_eq!(metadata_value(&d, "x-other"), None);
}

#[tokio::test]
async fn a_header_both_built_in_and_allowlisted_is_forwarded_once() {
    let d = demo_with(|c| {
        c.transcoding.forward_headers = vec!["Authorization".into(), "x-request-id".into()]
    })
    .await;
    let r = send(
        "GET",
        &d.url("/v1/shelves/1"),
        &[("authorization", "Bearer a"), ("x-request-id", "r-1")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let metadata = d
        .backends
        .library_backend
        .last_metadata()
        .expect("a call was recorded");
    let all = |key: &str| -> Vec<String> {
        metadata
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    assert_eq!(all("authorization"), ["Bearer a"]);
    assert_eq!(all("x-request-id"), ["r-1"]);
}

#[tokio::test]
async fn route_metadata_from_the_config_is_sent_with_every_call_of_the_method() {
    let d = demo_with(|c| {
        c.routes.push(omnigate::config::RouteConfig {
            grpc: "library.v1.Library/GetShelf".into(),
            metadata: [("x-caller".to_string(), "omnigate".to_string())].into(),
            ..Default::default()
        })
    })
    .await;
    let r = get(&d.url("/v1/shelves/2")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(metadata_value(&d, "x-caller").as_deref(), Some("omnigate"));
    get(&d.url("/v1/shelves/1/books/1")).await;
    assert_eq!(metadata_value(&d, "x-caller"), None, "only for GetShelf");
}

#[tokio::test]
async fn gateway_responses_carry_no_grpc_protocol_headers() {
    // The demo backend sends no custom response metadata, so `Grpc-Metadata-*` stays empty;
    // what must never leak are the gRPC protocol headers themselves.
    let d = demo().await;
    for r in [
        get(&d.url("/v1/shelves/1/books/1")).await,
        get(&d.url("/v1/shelves/100")).await,
    ] {
        for name in r.headers.keys() {
            let name = name.as_str();
            assert!(
                !name.starts_with("grpc-"),
                "unexpected header {name}: {:?}",
                r.headers
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Deadlines.

#[tokio::test]
async fn a_grpc_timeout_header_shorter_than_the_backend_is_a_504_json_error() {
    let d = demo().await;
    d.backends
        .library_backend
        .set_delay(std::time::Duration::from_secs(2));
    let r = send(
        "GET",
        &d.url("/v1/shelves/1"),
        &[("grpc-timeout", "50m")],
        "",
    )
    .await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["code"], 4, "{body}");
    assert_eq!(body["details"][0]["reason"], "UPSTREAM_TIMEOUT", "{body}");
    d.backends
        .library_backend
        .set_delay(std::time::Duration::ZERO);
    assert_still_serving(&d).await;
}

#[tokio::test]
async fn a_per_route_timeout_is_a_504_for_that_method_only() {
    let d = demo_with(|c| {
        c.routes.push(omnigate::config::RouteConfig {
            grpc: "library.v1.Library/GetShelf".into(),
            timeout: Some("50ms".into()),
            ..Default::default()
        })
    })
    .await;
    d.backends
        .library_backend
        .set_delay(std::time::Duration::from_millis(300));
    let r = get(&d.url("/v1/shelves/1")).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["code"], 4);
    let other = get(&d.url("/v1/shelves/1/books/1")).await;
    assert_eq!(
        other.status,
        200,
        "GetBook keeps the backend's 10s: {}",
        other.text()
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Status mapping.

/// (shelf id, HTTP status, gRPC code, `@type`s of the details)
#[tokio::test]
async fn backend_statuses_map_to_the_standard_http_status_with_typed_details() {
    let d = demo().await;
    let t = |name: &str| format!("type.googleapis.com/google.rpc.{name}");
    let cases: &[(&str, u16, i64, &[&str])] = &[
        ("fail-internal", 500, 13, &["DebugInfo"]),
        ("fail-unavailable", 503, 14, &["RetryInfo"]),
        ("fail-permission-denied", 403, 7, &["ErrorInfo"]),
        ("fail-unauthenticated", 401, 16, &["ErrorInfo"]),
        ("fail-resource-exhausted", 429, 8, &["QuotaFailure"]),
        ("fail-deadline-exceeded", 504, 4, &[]),
        ("fail-failed-precondition", 400, 9, &["PreconditionFailure"]),
        (
            "fail-help",
            400,
            3,
            &["Help", "LocalizedMessage", "RequestInfo"],
        ),
        ("100", 404, 5, &["ResourceInfo"]),
    ];
    for (id, status, code, types) in cases {
        let r = get(&d.url(&format!("/v1/shelves/{id}"))).await;
        assert_eq!(r.status, *status, "{id}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{id}");
        let body = r.json();
        assert_eq!(body["code"], *code, "{id}: {body}");
        assert!(!r.error_message().is_empty(), "{id}: {body}");
        let got: Vec<&str> = body["details"]
            .as_array()
            .expect("details array")
            .iter()
            .map(|d| d["@type"].as_str().unwrap_or_default())
            .collect();
        let want: Vec<String> = types.iter().map(|n| t(n)).collect();
        assert_eq!(got, want, "{id}: {body}");
    }
}

#[tokio::test]
async fn status_details_are_decoded_to_proto3_json() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/100")).await;
    assert_eq!(
        r.json(),
        json!({
            "code": 5,
            "message": "Shelf shelves/100 not found",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                "resourceType": "library.v1.Shelf",
                "resourceName": "shelves/100",
                "description": "Shelf shelves/100 not found",
            }],
        })
    );

    let r = get(&d.url("/v1/shelves/fail-unavailable")).await;
    assert_eq!(r.json()["details"][0]["retryDelay"], "1s");

    let r = post_json(
        &d.url("/v1/shelves/1/books"),
        json!({"title": " ", "rating": 7}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["details"][0]["fieldViolations"],
        json!([
            {"field": "book.title", "description": "title must not be empty", "reason": "REQUIRED"},
            {"field": "book.rating", "description": "rating must be between 0 and 5", "reason": "OUT_OF_RANGE"},
        ])
    );

    let r = send_json(
        "POST",
        &d.url("/v1/shelves?shelf_id=1"),
        r#"{"theme": "Duplicates"}"#,
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["code"], 6);
}

// ---------------------------------------------------------------------------------------------
// 11. Bad input.

/// (what, content type, body, field named, part of the message): every case is a 400 from
/// `POST /v1/shelves/1/books` that never reaches the backend.
#[tokio::test]
async fn bad_json_bodies_are_400s_naming_the_problem_and_never_reach_the_backend() {
    let d = demo().await;
    let deep = format!(
        "{{\"title\": \"x\", \"metadata\": {}1{}}}",
        "{\"a\": ".repeat(70),
        "}".repeat(70)
    );
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "malformed",
            br#"{"title": "x","#.to_vec(),
            "",
            "malformed JSON",
        ),
        (
            "not an object",
            br#"["x"]"#.to_vec(),
            "",
            "must be a JSON object",
        ),
        (
            "wrong type",
            br#"{"title": 5}"#.to_vec(),
            "title",
            "expected a string",
        ),
        (
            "wrong type nested",
            br#"{"title": "x", "paperback": {"heightMm": "tall"}}"#.to_vec(),
            "paperback.heightMm",
            "tall",
        ),
        (
            "int32 overflow",
            br#"{"title": "x", "paperback": {"heightMm": 3000000000}}"#.to_vec(),
            "paperback.heightMm",
            "out of range for int32",
        ),
        (
            "uint32 negative",
            br#"{"title": "x", "edition": -1}"#.to_vec(),
            "edition",
            "out of range",
        ),
        (
            "fraction in an integer",
            br#"{"title": "x", "pageCount": 1.5}"#.to_vec(),
            "pageCount",
            "1.5",
        ),
        (
            "unknown enum",
            br#"{"title": "x", "genre": "COOKING"}"#.to_vec(),
            "genre",
            "unknown value \"COOKING\"",
        ),
        (
            "invalid UTF-8",
            b"{\"title\": \"\xff\xfe\"}".to_vec(),
            "",
            "not valid UTF-8",
        ),
        (
            "oneof conflict",
            br#"{"title": "x", "paperback": {}, "ebook": {}}"#.to_vec(),
            "ebook",
            "oneof `format`",
        ),
        (
            "duplicate key",
            br#"{"title": "x", "title": "y"}"#.to_vec(),
            "title",
            "duplicate key",
        ),
        (
            "both spellings",
            br#"{"title": "x", "page_count": 1, "pageCount": 2}"#.to_vec(),
            "pageCount",
            "given twice",
        ),
        (
            "bad timestamp",
            br#"{"title": "x", "createTime": "yesterday"}"#.to_vec(),
            "createTime",
            "timestamp",
        ),
        (
            "bad base64",
            br#"{"title": "x", "checksum": "***"}"#.to_vec(),
            "checksum",
            "",
        ),
        (
            "too deep",
            deep.into_bytes(),
            "",
            "deeper than the maximum of 64",
        ),
    ];
    for (what, body, field, part) in cases {
        let r = send("POST", &d.url("/v1/shelves/1/books"), &[JSON], body).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        let (got, description) = violation(&r);
        assert_eq!(got, field, "{what}: {}", r.text());
        assert!(description.contains(part), "{what}: {description}");
        assert_eq!(r.json()["code"], 3, "{what}");
    }
    assert_eq!(d.backends.library_backend.calls("CreateBook"), 0);
    assert_still_serving(&d).await;
}

#[tokio::test]
async fn max_json_depth_is_configurable() {
    let d = demo_with(|c| c.limits.max_json_depth = 3).await;
    // body object, metadata, a, b: four levels.
    let r = post_json(
        &d.url("/v1/shelves/1/books"),
        json!({"title": "x", "metadata": {"a": {"b": {}}}}),
    )
    .await;
    assert_bad_request(&r, "", "deeper than the maximum of 3");
    assert_eq!(d.backends.library_backend.calls("CreateBook"), 0);
    let r = post_json(
        &d.url("/v1/shelves/1/books"),
        json!({"title": "x", "metadata": {"a": {"b": 1}}}),
    )
    .await;
    assert_eq!(r.status, 200, "depth 3 is fine: {}", r.text());
}

#[tokio::test]
async fn a_json_body_sent_as_text_plain_is_a_415() {
    let d = demo().await;
    let r = send(
        "POST",
        &d.url("/v1/shelves/1/books"),
        &[("content-type", "text/plain")],
        r#"{"title": "x"}"#,
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.error_message().contains("text/plain"), "{}", r.text());
    assert!(
        r.error_message().contains("application/json"),
        "{}",
        r.text()
    );
    assert_eq!(d.backends.library_backend.calls("CreateBook"), 0);

    // JSON with parameters or a +json suffix is fine.
    for ct in [
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let r = send(
            "POST",
            &d.url("/v1/shelves/1/books"),
            &[("content-type", ct)],
            r#"{"title": "ok"}"#,
        )
        .await;
        assert_eq!(r.status, 200, "{ct}: {}", r.text());
    }
}

/// HEAD is GET without the body (RFC 9110 §9.3.2): same status and headers, no body.
#[tokio::test]
async fn head_on_a_get_binding_answers_like_get_without_a_body() {
    let d = demo().await;
    let full = get(&d.url("/v1/shelves/1/books/1")).await;
    assert_eq!(full.status, 200, "{}", full.text());
    let head = send("HEAD", &d.url("/v1/shelves/1/books/1"), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "{}", head.text());
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    let missing = send("HEAD", &d.url("/v1/shelves/1/books/999"), &[], "").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.is_empty());
    // A path without a GET binding is still a 405 for HEAD.
    let r = send("HEAD", &d.url("/v1/shelves/1/books:import"), &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
}

/// (method, path, Allow)
#[tokio::test]
async fn a_known_path_with_the_wrong_method_is_a_405_with_allow() {
    let d = demo().await;
    let cases = [
        ("DELETE", "/v1/shelves", "GET, HEAD, POST"),
        ("PUT", "/v1/shelves/1/books/1", "DELETE, GET, HEAD, PATCH"),
        ("POST", "/v1/shelves/1/books/1/cover", "GET, HEAD, PUT"),
        ("GET", "/v1/shelves/1/books:import", "POST"),
    ];
    for (method, path, allow) in cases {
        let r = send(method, &d.url(path), &[], "").await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.error_message().contains(method), "{}", r.text());
    }
    assert_still_serving(&d).await;
}

#[tokio::test]
async fn a_path_variable_that_is_not_utf8_is_a_400_without_a_backend_call() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/1/books/%FF")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error_message().contains("`name`"), "{}", r.text());
    assert!(r.error_message().contains("UTF-8"), "{}", r.text());
    assert_eq!(d.backends.library_backend.calls("GetBook"), 0);
    assert_still_serving(&d).await;
}

#[tokio::test]
async fn a_path_variable_that_is_not_utf8_names_the_field_in_bad_request() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/1/books/%FF")).await;
    assert_bad_request(&r, "name", "not valid UTF-8");
}

#[tokio::test]
async fn an_unknown_path_is_a_404_json_error() {
    let d = demo().await;
    for path in ["/v2/nothing", "/v1/shelves/1/books/1/chapters", "/v1"] {
        let r = get(&d.url(path)).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        assert_eq!(body["code"], 5, "{body}");
        assert_eq!(body["details"][0]["reason"], "NO_ROUTE", "{body}");
        assert!(r.error_message().contains(path), "{body}");
    }
    assert_still_serving(&d).await;
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_a_413() {
    let d = demo_with(|c| c.limits.max_body_bytes = 64).await;
    let big = json!({"title": "x".repeat(200)});
    let r = post_json(&d.url("/v1/shelves/1/books"), big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["code"], 8);
    assert_eq!(d.backends.library_backend.calls("CreateBook"), 0);
    assert_still_serving(&d).await;
}
