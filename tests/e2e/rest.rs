//! REST → gRPC transcoding against the example Library and Authors services.

use crate::support::{demo, get};

#[tokio::test]
async fn get_with_a_nested_path_variable_returns_the_book_as_proto3_json() {
    let d = demo().await;
    let r = get(&d.url("/v1/shelves/1/books/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let book = r.json();
    assert_eq!(book["name"], "shelves/1/books/1");
    assert_eq!(book["title"], "The Glass Orchard");
    assert_eq!(book["authorId"], "1", "lowerCamelCase names");
    assert!(book["pageCount"].is_string(), "int64 as a string: {book}");
    assert!(r.header("x-request-id").is_some());
}
