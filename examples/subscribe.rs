//! A GraphQL subscription over WebSocket (graphql-transport-ws), against `omnigate demo`:
//! watches shelf 1 and prints the first events (the books already there, then changes).
//!
//!   cargo run -- demo &                      # terminal 1
//!   cargo run --example subscribe            # terminal 2
//!   curl -X POST http://127.0.0.1:8080/v1/shelves/1/books \
//!        -H 'content-type: application/json' -d '{"title": "Solaris", "authorId": "3"}'
//!
//! Set OMNIGATE_URL to use another address (default ws://127.0.0.1:8080/graphql).

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("OMNIGATE_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080/graphql".into());
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;

    socket
        .send(Message::text(r#"{"type":"connection_init","payload":{}}"#))
        .await?;
    let subscribe = serde_json::json!({
        "id": "1",
        "type": "subscribe",
        "payload": { "query": "subscription { watchShelf(name: \"shelves/1\") { kind book { name title } } }" },
    });
    socket.send(Message::text(subscribe.to_string())).await?;

    let mut events = 0;
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        println!("{text}");
        if text.contains("\"next\"") {
            events += 1;
            if events == 5 {
                socket
                    .send(Message::text(r#"{"id":"1","type":"complete"}"#))
                    .await?;
                break;
            }
        }
    }
    Ok(())
}
