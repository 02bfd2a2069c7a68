//! GraphQL validation answers the same every time: a request that passed once (and is then
//! run without repeating the full validation) does not let a variant with other variables,
//! another operation name or another document through.

use serde_json::{json, Value};

use crate::support::{demo, send, Demo};

async fn post(d: &Demo, body: Value) -> Value {
    send(
        "POST",
        &d.url("/graphql"),
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
    .json()
}

const BY_NAME: &str = "query Shelf($n: String!) { getShelf(name: $n) { name } }";

#[tokio::test]
async fn requests_that_passed_validation_do_not_vouch_for_their_variants() {
    let d = demo().await;
    let shelf = json!({ "data": { "getShelf": { "name": "shelves/1" } } });
    let cases = [
        (
            json!({ "query": BY_NAME, "variables": { "n": "shelves/1" } }),
            None,
        ),
        // A variable of the wrong type, a missing one: refused by validation.
        (
            json!({ "query": BY_NAME, "variables": { "n": 5 } }),
            Some("Invalid value"),
        ),
        (
            json!({ "query": BY_NAME, "variables": {} }),
            Some("Variable n is not defined"),
        ),
        // Another operation name, another document.
        (
            json!({ "query": BY_NAME, "variables": { "n": "shelves/1" }, "operationName": "Other" }),
            Some("Unknown operation named \"Other\""),
        ),
        (
            json!({ "query": "query Shelf($n: String!) { getShelf(name: $n) { name nope } }",
                    "variables": { "n": "shelves/1" } }),
            Some("Unknown field \"nope\""),
        ),
    ];
    // Twice over: the second round meets requests that ran before.
    for round in 0..2 {
        for (body, refused) in &cases {
            let answer = post(&d, body.clone()).await;
            match refused {
                None => assert_eq!(answer, shelf, "round {round}: {body}"),
                Some(message) => {
                    assert_eq!(answer["data"], Value::Null, "round {round}: {answer}");
                    let said = answer["errors"][0]["message"].as_str().unwrap_or_default();
                    assert!(said.contains(message), "round {round}: {body} → {answer}");
                }
            }
        }
    }
}
