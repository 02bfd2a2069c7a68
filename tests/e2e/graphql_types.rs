//! How protobuf types appear in the generated GraphQL schema, rule by rule, through real
//! queries and mutations against the example Library service; descriptions, deprecation and
//! root placement through introspection; and the schema rebuilt after a descriptor refresh.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{demo, graphql, Demo, GraphqlWs};

/// One field of `shelves/1/books/{n}`.
async fn book(d: &Demo, n: u32, fields: &str) -> Value {
    let body = graphql(
        &d.gw,
        &format!("query($name: String!) {{ getBook(name: $name) {{ {fields} }} }}"),
        json!({"name": format!("shelves/1/books/{n}")}),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["getBook"].clone()
}

/// Create a book on shelves/2 from `book` (a BookInput literal); the created book's `fields`
/// or the whole response when it failed.
async fn create(d: &Demo, book: &str, fields: &str) -> Value {
    graphql(
        &d.gw,
        &format!("mutation {{ createBook(parent: \"shelves/2\", book: {{ title: \"T\", {book} }}) {{ {fields} }} }}"),
        json!({}),
    )
    .await
}

/// The first error's message, asserting the operation failed with it.
fn error_message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {body}"))
        .to_string()
}

/// Each `(BookInput fields, words)` is refused before any upstream call, naming `words`.
async fn refused(d: &Demo, cases: &[(&str, &str)]) {
    let before = d.backends.library_backend.calls("CreateBook");
    for (input, words) in cases {
        let body = create(d, input, "name").await;
        let message = error_message(&body);
        assert!(
            message.contains(words),
            "{input}: {message:?} lacks {words:?}"
        );
        assert!(body["data"]["createBook"].is_null(), "{input}: {body}");
    }
    assert_eq!(
        d.backends.library_backend.calls("CreateBook"),
        before,
        "a refused input reached the backend"
    );
}

#[tokio::test]
async fn sixty_four_bit_integers_are_exact_strings_and_accept_numbers_or_strings() {
    let d = demo().await;
    let b = book(&d, 1, "pageCount isbn13 ebook { sizeBytes }").await;
    assert_eq!(b["pageCount"], "412");
    assert_eq!(b["isbn13"], "9780000000017");
    assert_eq!(
        book(&d, 2, "ebook { sizeBytes }").await["ebook"]["sizeBytes"],
        "2400000"
    );

    // (input, pageCount out, isbn13 out): numbers past 2^53 and the type limits stay exact.
    let cases = [
        (
            "pageCount: 9007199254740993, isbn13: 18446744073709551615",
            "9007199254740993",
            "18446744073709551615",
        ),
        (
            "pageCount: \"9223372036854775807\", isbn13: \"42\"",
            "9223372036854775807",
            "42",
        ),
    ];
    for (input, pages, isbn) in cases {
        let body = create(&d, input, "pageCount isbn13").await;
        assert_eq!(
            body["data"]["createBook"]["pageCount"], pages,
            "{input}: {body}"
        );
        assert_eq!(
            body["data"]["createBook"]["isbn13"], isbn,
            "{input}: {body}"
        );
    }
    // The same through variables.
    let body = graphql(
        &d.gw,
        "mutation($pages: Int64!, $isbn: UInt64!) { createBook(parent: \"shelves/2\", book: {title: \"V\", pageCount: $pages, isbn13: $isbn}) { pageCount isbn13 } }",
        json!({"pages": "77", "isbn": 18446744073709551615u64}),
    )
    .await;
    assert_eq!(
        body["data"]["createBook"],
        json!({"pageCount": "77", "isbn13": "18446744073709551615"}),
        "{body}"
    );

    refused(
        &d,
        &[
            ("pageCount: \"12 pages\"", "pageCount"),
            ("pageCount: 1.5", "pageCount"),
            ("pageCount: 9223372036854775808", "pageCount"),
            ("isbn13: -1", "isbn13"),
            ("isbn13: \"-1\"", "isbn13"),
            ("isbn13: \"18446744073709551616\"", "isbn13"),
            ("isbn13: true", "isbn13"),
        ],
    )
    .await;
}

#[tokio::test]
async fn uint32_takes_its_whole_range_and_nothing_outside_it() {
    let d = demo().await;
    assert_eq!(book(&d, 1, "edition").await["edition"], 2);
    for edition in ["0", "4294967295"] {
        let body = create(&d, &format!("edition: {edition}"), "edition").await;
        assert_eq!(
            body["data"]["createBook"]["edition"].to_string(),
            edition,
            "{body}"
        );
    }
    refused(
        &d,
        &[
            ("edition: -1", "edition"),
            ("edition: 4294967296", "edition"),
            ("edition: \"7\"", "edition"),
            ("edition: 2.5", "edition"),
            // int32 is GraphQL's Int (past its range, the transcoder refuses it by name).
            ("paperback: {heightMm: 2147483648}", "heightMm"),
        ],
    )
    .await;
}

#[tokio::test]
async fn float_and_double_are_graphql_floats() {
    let d = demo().await;
    let b = book(&d, 1, "rating weightGrams").await;
    assert_eq!(b, json!({"rating": 4.5, "weightGrams": 540.5}));
    // An Int literal is a valid Float; a float keeps the digits the client wrote.
    let body = create(&d, "rating: 3, weightGrams: 0.1", "rating weightGrams").await;
    assert_eq!(
        body["data"]["createBook"],
        json!({"rating": 3.0, "weightGrams": 0.1}),
        "{body}"
    );
    let body = create(&d, "rating: 4.1", "rating").await;
    assert_eq!(
        body["data"]["createBook"]["rating"],
        json!(4.1),
        "a float (f32) field reads back as written: {body}"
    );
    refused(&d, &[("rating: \"4\"", "rating")]).await;
}

#[tokio::test]
async fn bytes_are_base64_both_ways() {
    let d = demo().await;
    assert_eq!(book(&d, 1, "checksum").await["checksum"], "3q2+7w==");
    assert_eq!(book(&d, 3, "checksum").await["checksum"], "");
    let body = create(&d, "checksum: \"AQID\"", "checksum").await;
    assert_eq!(body["data"]["createBook"]["checksum"], "AQID", "{body}");
    // The URL-safe alphabet is accepted too (proto3 JSON); output is standard base64.
    let body = create(&d, "checksum: \"-_8\"", "checksum").await;
    assert_eq!(body["data"]["createBook"]["checksum"], "+/8=", "{body}");

    let before = d.backends.library_backend.calls("CreateBook");
    let body = create(&d, "checksum: \"not base64!\"", "checksum").await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{body}"
    );
    assert!(error_message(&body).contains("checksum"), "{body}");
    assert_eq!(d.backends.library_backend.calls("CreateBook"), before);
}

#[tokio::test]
async fn enums_go_by_their_proto_value_names_both_ways() {
    let d = demo().await;
    assert_eq!(
        book(&d, 2, "genre state").await,
        json!({"genre": "SCIENCE_FICTION", "state": "PUBLISHED"})
    );
    assert_eq!(book(&d, 3, "state").await["state"], "DRAFT");

    let body = create(&d, "genre: POETRY", "genre state").await;
    assert_eq!(
        body["data"]["createBook"],
        json!({"genre": "POETRY", "state": "DRAFT"}),
        "{body}"
    );
    // As an argument, literal and variable.
    let titles = |body: &Value| -> Vec<String> {
        body["data"]["listBooks"]["books"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|b| b["title"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let body = graphql(
        &d.gw,
        "{ listBooks(parent: \"shelves/1\", genre: SCIENCE_FICTION) { books { title } } }",
        json!({}),
    )
    .await;
    assert_eq!(titles(&body), ["Stars Beneath the Ice"]);
    let by_variable = "query($g: Genre!) { listBooks(parent: \"shelves/1\", genre: $g, includeDrafts: true) { books { title } } }";
    let body = graphql(&d.gw, by_variable, json!({"g": "FICTION"})).await;
    assert_eq!(
        titles(&body),
        ["The Glass Orchard", "Notes Toward a Lighthouse"]
    );

    refused(
        &d,
        // (A quoted value is taken too: async-graphql accepts strings for enums.)
        &[("genre: NOVEL", "NOVEL"), ("genre: 7", "genre")],
    )
    .await;
    for bad in [json!({"g": "NOVEL"}), json!({"g": 3})] {
        let body = graphql(&d.gw, by_variable, bad.clone()).await;
        assert!(error_message(&body).contains("g"), "{bad}: {body}");
        assert!(body["data"].is_null(), "{bad}: {body}");
    }
}

#[tokio::test]
async fn maps_are_lists_of_key_value_entries_both_ways() {
    let d = demo().await;
    let mut labels = book(&d, 1, "labels { key value }").await["labels"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    labels.sort_by_key(|e| e["key"].to_string());
    assert_eq!(
        labels,
        [
            json!({"key": "lang", "value": "en"}),
            json!({"key": "series", "value": "orchard"})
        ]
    );
    // map<string, int32>.
    let body = graphql(
        &d.gw,
        "{ getShelfStats(name: \"shelves/1\") { stats { genreCounts { key value } } } }",
        json!({}),
    )
    .await;
    let mut counts = body["data"]["getShelfStats"]["stats"]["genreCounts"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{body}"));
    counts.sort_by_key(|e| e["key"].to_string());
    assert_eq!(
        counts,
        [
            json!({"key": "FICTION", "value": 2}),
            json!({"key": "SCIENCE_FICTION", "value": 1})
        ]
    );
    // A map argument of the request itself, as a literal and as a variable.
    let body = graphql(
        &d.gw,
        "{ listBooks(parent: \"shelves/2\", labels: [{key: \"lang\", value: \"fr\"}]) { books { title } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["listBooks"]["books"],
        json!([{"title": "A Brief Atlas of Rivers"}]),
        "{body}"
    );
    let body = graphql(
        &d.gw,
        "query($labels: [ListBooksRequestLabelsEntryInput!]!) { listBooks(parent: \"shelves/1\", labels: $labels) { totalSize } }",
        json!({"labels": [{"key": "series", "value": "orchard"}, {"key": "lang", "value": "en"}]}),
    )
    .await;
    assert_eq!(body["data"]["listBooks"]["totalSize"], 1, "{body}");
}

#[tokio::test]
async fn oneof_members_are_nullable_and_setting_two_is_refused_naming_both() {
    let d = demo().await;
    let fields = "paperback { coverFinish heightMm } ebook { fileFormat sizeBytes drm }";
    assert_eq!(
        book(&d, 1, fields).await,
        json!({"paperback": {"coverFinish": "matte", "heightMm": 198}, "ebook": null})
    );
    assert_eq!(
        book(&d, 2, fields).await,
        json!({"paperback": null, "ebook": {"fileFormat": "epub", "sizeBytes": "2400000", "drm": false}})
    );
    assert_eq!(
        book(&d, 3, fields).await,
        json!({"paperback": null, "ebook": null})
    );
    let body = create(&d, "ebook: {fileFormat: \"pdf\", drm: true}", fields).await;
    assert_eq!(
        body["data"]["createBook"],
        json!({"paperback": null, "ebook": {"fileFormat": "pdf", "sizeBytes": "0", "drm": true}}),
        "{body}"
    );
    // Both members through a variable: refused by the gateway, naming both.
    let before = d.backends.library_backend.calls("CreateBook");
    let body = graphql(
        &d.gw,
        "mutation($book: BookInput!) { createBook(parent: \"shelves/2\", book: $book) { name } }",
        json!({"book": {"title": "Both", "paperback": {"coverFinish": "matte"}, "ebook": {"fileFormat": "epub"}}}),
    )
    .await;
    let message = error_message(&body);
    assert!(
        message.contains("paperback") && message.contains("ebook"),
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT");
    assert_eq!(d.backends.library_backend.calls("CreateBook"), before);
}

#[tokio::test]
async fn timestamps_are_rfc3339_date_times_both_ways() {
    let d = demo().await;
    let b = book(&d, 1, "createTime publishTime").await;
    assert_eq!(
        b,
        json!({"createTime": "2023-11-14T22:15:00Z", "publishTime": "2023-11-14T22:16:40Z"})
    );
    assert!(book(&d, 3, "publishTime").await["publishTime"].is_null());

    let body = graphql(
        &d.gw,
        "mutation { publishBook(name: \"shelves/1/books/3\", publishTime: \"2024-05-01T14:00:00.5+02:00\") { state publishTime } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["publishBook"],
        json!({"state": "PUBLISHED", "publishTime": "2024-05-01T12:00:00.500Z"}),
        "{body}"
    );
    let body = graphql(
        &d.gw,
        "query($after: DateTime) { listBooks(parent: \"shelves/1\", publishedAfter: $after) { books { title } } }",
        json!({"after": "2023-11-14T22:17:00Z"}),
    )
    .await;
    assert_eq!(
        body["data"]["listBooks"]["books"],
        json!([{"title": "Stars Beneath the Ice"}, {"title": "Notes Toward a Lighthouse"}]),
        "{body}"
    );

    for bad in ["\"yesterday\"", "\"2024-05-01\"", "1714564800"] {
        let body = graphql(
            &d.gw,
            &format!(
                "{{ listBooks(parent: \"shelves/1\", publishedAfter: {bad}) {{ totalSize }} }}"
            ),
            json!({}),
        )
        .await;
        assert!(
            error_message(&body).contains("publishedAfter")
                || body["errors"][0]["extensions"]["code"] == "INVALID_ARGUMENT",
            "{bad}: {body}"
        );
        assert!(body["data"]["listBooks"].is_null(), "{bad}: {body}");
    }
}

#[tokio::test]
async fn durations_are_strings_in_seconds() {
    let d = demo().await;
    assert_eq!(book(&d, 1, "readTime").await["readTime"], "32400s");
    assert_eq!(book(&d, 2, "readTime").await["readTime"], "23400s");
    assert!(book(&d, 3, "readTime").await["readTime"].is_null());
    let body = create(&d, "readTime: \"1.5s\"", "readTime").await;
    assert_eq!(body["data"]["createBook"]["readTime"], "1.500s", "{body}");
    let body = create(&d, "readTime: \"90 minutes\"", "readTime").await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{body}"
    );
    assert!(error_message(&body).contains("readTime"), "{body}");
}

#[tokio::test]
async fn wrappers_and_optional_fields_are_nullable_and_keep_presence() {
    let d = demo().await;
    assert_eq!(
        book(&d, 1, "price subtitle").await,
        json!({"price": 18.5, "subtitle": "A Novel"})
    );
    assert_eq!(
        book(&d, 3, "price subtitle").await,
        json!({"price": null, "subtitle": null}),
        "price absent and no subtitle read as null"
    );
    // Zero and empty are values, distinct from absent.
    let body = create(&d, "price: 0, subtitle: \"\"", "price subtitle").await;
    assert_eq!(
        body["data"]["createBook"],
        json!({"price": 0.0, "subtitle": ""}),
        "{body}"
    );
    let body = create(&d, "price: null, subtitle: null", "price subtitle").await;
    assert_eq!(
        body["data"]["createBook"],
        json!({"price": null, "subtitle": null}),
        "{body}"
    );
    // An Int32Value argument: absent means the default page size.
    let body = graphql(
        &d.gw,
        "{ a: listBooks(parent: \"shelves/1\", pageSize: 1) { books { title } nextPageToken } b: listBooks(parent: \"shelves/1\") { totalSize nextPageToken } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["a"],
        json!({"books": [{"title": "The Glass Orchard"}], "nextPageToken": "1"}),
        "{body}"
    );
    assert_eq!(
        body["data"]["b"],
        json!({"totalSize": 2, "nextPageToken": ""})
    );
}

#[tokio::test]
async fn struct_fields_are_json_values_both_ways() {
    let d = demo().await;
    assert_eq!(
        book(&d, 1, "metadata").await["metadata"],
        json!({"publisher": "Northwind Press", "printings": 3.0, "signed": true})
    );
    assert!(book(&d, 3, "metadata").await["metadata"].is_null());
    let body = create(
        &d,
        "metadata: {tier: \"gold\", tags: [\"a\", 1.5, null], nested: {ok: true}}",
        "metadata",
    )
    .await;
    assert_eq!(
        body["data"]["createBook"]["metadata"],
        json!({"tier": "gold", "tags": ["a", 1.5, null], "nested": {"ok": true}}),
        "{body}"
    );
    let body = graphql(
        &d.gw,
        "mutation($m: JSON) { createBook(parent: \"shelves/2\", book: {title: \"J\", metadata: $m}) { metadata } }",
        json!({"m": {"list": [{"deep": [1.0, 2.0]}], "empty": {}}}),
    )
    .await;
    assert_eq!(
        body["data"]["createBook"]["metadata"],
        json!({"list": [{"deep": [1.0, 2.0]}], "empty": {}}),
        "{body}"
    );
    // A Struct must be an object.
    let body = create(&d, "metadata: [1, 2]", "metadata").await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{body}"
    );
}

#[tokio::test]
async fn a_field_mask_is_a_list_of_paths_and_only_those_fields_change() {
    let d = demo().await;
    let update = "mutation($mask: [String!]) { updateBook(book: {name: \"shelves/1/books/1\", title: \"Renamed\", pageCount: 1, edition: 9}, updateMask: $mask) { title pageCount edition } }";
    let body = graphql(&d.gw, update, json!({"mask": ["title"]})).await;
    assert_eq!(
        body["data"]["updateBook"],
        json!({"title": "Renamed", "pageCount": "412", "edition": 2}),
        "{body}"
    );
    // JSON (lowerCamelCase) path names, as GraphQL clients see the fields.
    let body = graphql(&d.gw, update, json!({"mask": ["pageCount", "edition"]})).await;
    assert_eq!(
        body["data"]["updateBook"],
        json!({"title": "Renamed", "pageCount": "1", "edition": 9}),
        "{body}"
    );
    // Proto names, as the field's description and gRPC clients spell paths.
    let body = graphql(&d.gw, update, json!({"mask": ["title", "page_count"]})).await;
    assert_eq!(
        body["data"]["updateBook"],
        json!({"title": "Renamed", "pageCount": "1", "edition": 9}),
        "{body}"
    );
    let body = graphql(
        &d.gw,
        "mutation { updateBook(book: {name: \"shelves/1/books/2\", readTime: \"60s\", title: \"Not Written\"}, updateMask: [\"read_time\"]) { title readTime } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["updateBook"],
        json!({"title": "Stars Beneath the Ice", "readTime": "60s"}),
        "{body}"
    );
    // A path the backend does not know: its error, with the gRPC code.
    let body = graphql(&d.gw, update, json!({"mask": ["createTime"]})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{body}"
    );
}

#[tokio::test]
async fn methods_returning_empty_answer_true() {
    let d = demo().await;
    let body = graphql(
        &d.gw,
        "mutation { deleteBook(name: \"shelves/1/books/2\") }",
        json!({}),
    )
    .await;
    assert_eq!(body, json!({"data": {"deleteBook": true}}));
    let body = graphql(
        &d.gw,
        "mutation { deleteBook(name: \"shelves/1/books/2\") }",
        json!({}),
    )
    .await;
    assert_eq!(body["data"]["deleteBook"], Value::Null, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
    // ListShelvesRequest is empty: the field takes no arguments.
    let body = graphql(
        &d.gw,
        "{ __type(name: \"Query\") { fields { name args { name } type { name } } } }",
        json!({}),
    )
    .await;
    let fields = body["data"]["__type"]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let list_shelves = fields
        .iter()
        .find(|f| f["name"] == "listShelves")
        .expect("listShelves");
    assert_eq!(list_shelves["args"], json!([]));
}

#[tokio::test]
async fn recursive_messages_nest_as_deep_as_the_data() {
    let d = demo().await;
    assert_eq!(
        book(
            &d,
            1,
            "chapters { title startPage sections { title startPage sections { title } } }"
        )
        .await["chapters"],
        json!([
            {"title": "Seeds", "startPage": 1, "sections": [
                {"title": "Spring", "startPage": 1, "sections": []},
                {"title": "Frost", "startPage": 24, "sections": []}
            ]},
            {"title": "Harvest", "startPage": 210, "sections": []}
        ])
    );
    let body = create(
        &d,
        "chapters: [{title: \"A\", sections: [{title: \"A.1\", sections: [{title: \"A.1.a\", startPage: 3}]}]}]",
        "chapters { title sections { title sections { title startPage } } }",
    )
    .await;
    assert_eq!(
        body["data"]["createBook"]["chapters"],
        json!([{"title": "A", "sections": [{"title": "A.1", "sections": [{"title": "A.1.a", "startPage": 3}]}]}]),
        "{body}"
    );
}

#[tokio::test]
async fn proto_comments_are_descriptions_and_deprecated_fields_are_marked() {
    let d = demo().await;
    let body = graphql(
        &d.gw,
        r#"{
            book: __type(name: "Book") { description fields(includeDeprecated: true) { name isDeprecated description } }
            current: __type(name: "Book") { fields { name } }
            genre: __type(name: "Genre") { enumValues { name description } }
            query: __type(name: "Query") { fields { name description args { name description defaultValue } } }
        }"#,
        json!({}),
    )
    .await;
    let data = &body["data"];
    assert_eq!(data["book"]["description"], "A book on a shelf.", "{body}");
    let field = |name: &str| {
        data["book"]["fields"]
            .as_array()
            .and_then(|fields| fields.iter().find(|f| f["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("Book.{name} missing: {body}"))
    };
    assert_eq!(
        field("catalogueCode"),
        json!({"name": "catalogueCode", "isDeprecated": true,
            "description": "The old internal catalogue code. Use `isbn13` instead."})
    );
    assert_eq!(
        field("title"),
        json!({"name": "title", "isDeprecated": false,
            "description": "The title. Required, must not be blank."})
    );
    assert_eq!(
        field("isbn13")["description"],
        "The 13-digit ISBN as a number."
    );
    let current: Vec<&Value> = data["current"]["fields"]
        .as_array()
        .map(|f| f.iter().map(|f| &f["name"]).collect())
        .unwrap_or_default();
    assert!(!current.contains(&&json!("catalogueCode")), "{current:?}");
    assert!(current.contains(&&json!("isbn13")));

    let poetry = data["genre"]["enumValues"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "POETRY"))
        .cloned();
    assert_eq!(
        poetry,
        Some(json!({"name": "POETRY", "description": "Verse."}))
    );

    let get_book = data["query"]["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "getBook"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        get_book["description"],
        "Returns one book. Fails with NOT_FOUND if it does not exist."
    );
    assert_eq!(
        get_book["args"],
        json!([{"name": "name", "description": "The book to fetch, `shelves/{shelf}/books/{book}`.", "defaultValue": "\"\""}])
    );
}

#[tokio::test]
async fn reads_are_queries_writes_are_mutations_server_streams_are_subscriptions() {
    let d = demo().await;
    let body = graphql(
        &d.gw,
        "{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }",
        json!({}),
    )
    .await;
    let names = |root: &str| -> Vec<String> {
        body["data"]["__schema"][root]["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("{root}: {body}"))
            .iter()
            .map(|f| f["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (query, mutation, subscription) = (
        names("queryType"),
        names("mutationType"),
        names("subscriptionType"),
    );
    for read in [
        "getBook",
        "listBooks",
        "getShelf",
        "listShelves",
        "getShelfStats",
        "searchBooks",
        "getBookCover",
        "getAuthor",
    ] {
        assert!(
            query.contains(&read.to_string()),
            "{read} not in Query: {query:?}"
        );
    }
    for write in [
        "createBook",
        "updateBook",
        "deleteBook",
        "publishBook",
        "createShelf",
        "deleteShelf",
        "updateBookCover",
    ] {
        assert!(
            mutation.contains(&write.to_string()),
            "{write} not in Mutation: {mutation:?}"
        );
        assert!(!query.contains(&write.to_string()), "{write} in Query");
    }
    assert_eq!(subscription, ["watchShelf"]);
    for streaming_in in ["importBooks", "annotateBooks"] {
        for (root, fields) in [("Query", &query), ("Mutation", &mutation)] {
            assert!(
                !fields.contains(&streaming_in.to_string()),
                "{streaming_in} in {root}"
            );
        }
    }
    assert!(!query.contains(&"watchShelf".to_string()));
}

/// A gateway from YAML (`gw.yaml` in the crate root).
async fn gateway_from(yaml: &str) -> crate::support::TestGateway {
    let checked =
        omnigate::config::check_str("gw.yaml", yaml, &crate::support::manifest_dir(), |_| None);
    let (_, gateway) = omnigate::gateway::Gateway::start_checked(checked)
        .await
        .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
    crate::support::serve(gateway).await
}

#[tokio::test]
async fn a_descriptor_refresh_rebuilds_the_schema_and_running_operations_finish() {
    use crate::support::FakeGrpc;
    let v1 = FakeGrpc::library().spawn().await;
    let addr = v1.addr;
    let gw = gateway_from(&format!(
        "grpc:\n  - name: app\n    url: {}\n    reflection_refresh: 0s\n",
        v1.url()
    ))
    .await;
    let author = "{ getAuthor(id: \"1\") { displayName } }";
    let body = graphql(&gw, author, json!({})).await;
    assert!(
        error_message(&body).contains("getAuthor"),
        "not yet: {body}"
    );

    // Redeploy on the same port: Library (slow unary calls) plus the new Authors service.
    v1.stop().await;
    let library = omnigate::demo::LibraryBackend::new().with_delay(Duration::from_millis(300));
    let v2 = FakeGrpc::library_with(library.clone())
        .and_authors()
        .spawn_at(addr)
        .await;

    // Operations started on the old schema: a subscription and a slow query.
    let mut ws = GraphqlWs::connect(&gw, "graphql-transport-ws").await;
    ws.init(None).await;
    ws.subscribe(
        "w",
        "subscription { watchShelf(name: \"shelves/2\", changesOnly: true) { kind book { title } } }",
        json!({}),
    )
    .await;
    let watching = library.clone();
    assert!(crate::support::eventually(|| watching.active_watchers() == 1).await);
    let in_flight = {
        let url = gw.url("/graphql");
        tokio::spawn(async move {
            crate::support::post_json(
                &url,
                json!({"query": "{ getBook(name: \"shelves/1/books/1\") { title } }"}),
            )
            .await
            .json()
        })
    };
    while library.calls("GetBook") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.gateway.refresh("app").await, Ok(true), "the API changed");

    let book = in_flight.await.expect("join");
    assert_eq!(
        book["data"]["getBook"]["title"], "The Glass Orchard",
        "{book}"
    );

    // The new service's fields answer without a restart, over HTTP and on new sockets.
    let body = graphql(&gw, author, json!({})).await;
    assert_eq!(
        body["data"]["getAuthor"]["displayName"], "Ada Lindqvist",
        "{body}"
    );
    let mut fresh = GraphqlWs::connect(&gw, "graphql-transport-ws").await;
    fresh.init(None).await;
    fresh
        .subscribe("a", "{ getAuthor(id: \"2\") { displayName } }", json!({}))
        .await;
    assert_eq!(
        fresh.recv().await["payload"]["data"]["getAuthor"]["displayName"],
        "Tomas Okafor"
    );

    // The subscription opened before the refresh still streams, and completes on request.
    let body = graphql(
        &gw,
        "mutation { createBook(parent: \"shelves/2\", book: {title: \"After the Refresh\"}) { name } }",
        json!({}),
    )
    .await;
    assert!(body["data"]["createBook"]["name"].is_string(), "{body}");
    let message = ws.recv().await;
    assert_eq!(message["id"], "w", "{message}");
    assert_eq!(
        message["payload"]["data"]["watchShelf"],
        json!({"kind": "CREATED", "book": {"title": "After the Refresh"}})
    );
    ws.send(json!({"type": "complete", "id": "w"})).await;
    assert!(crate::support::eventually(|| library.active_watchers() == 0).await);
    drop(v2);
}

#[tokio::test]
async fn a_refresh_that_breaks_a_join_keeps_serving_the_last_good_schema() {
    use crate::support::FakeGrpc;
    let v1 = FakeGrpc::library().and_authors().spawn().await;
    let addr = v1.addr;
    let gw = gateway_from(&format!(
        "grpc:\n  - name: app\n    url: {}\n    reflection_refresh: 0s\ngraphql:\n  joins:\n    - on: Book\n      field: author\n      grpc: authors.v1.Authors/GetAuthor\n      arguments: {{ id: \"{{authorId}}\" }}\n",
        v1.url()
    ))
    .await;
    let query = "{ getBook(name: \"shelves/1/books/1\") { title author { displayName } } }";
    let body = graphql(&gw, query, json!({})).await;
    assert_eq!(
        body["data"]["getBook"]["author"]["displayName"], "Ada Lindqvist",
        "{body}"
    );

    // Redeployed without the Authors service the join has nothing to call: the new schema
    // cannot be built, and the old one keeps answering, request after request.
    v1.stop().await;
    let _v2 = FakeGrpc::library().spawn_at(addr).await;
    assert_eq!(gw.gateway.refresh("app").await, Ok(true), "the API changed");
    for _ in 0..3 {
        let body = graphql(
            &gw,
            "{ getBook(name: \"shelves/1/books/1\") { title } }",
            json!({}),
        )
        .await;
        assert_eq!(
            body["data"]["getBook"]["title"], "The Glass Orchard",
            "{body}"
        );
    }
}
