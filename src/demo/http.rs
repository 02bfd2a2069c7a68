//! A plain JSON-over-HTTP backend (axum): a small reviews resource plus
//! helpers for testing proxying (echo, delay, status, HTML, streaming).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::lock;

/// Longest accepted `/delay/{ms}`.
const MAX_DELAY_MS: u64 = 30_000;
/// Most lines `/stream/{n}` sends.
const MAX_STREAM_LINES: u64 = 1_000;
/// Pause between two `/stream/{n}` lines.
const STREAM_INTERVAL: Duration = Duration::from_millis(10);

/// A book review, as stored and returned by `/reviews`.
#[derive(Debug, Clone, Serialize)]
struct Review {
    id: String,
    /// Library book name, e.g. `shelves/1/books/1`.
    book: String,
    reviewer: String,
    rating: u8,
    text: String,
}

/// Body of `POST /reviews`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReview {
    book: String,
    #[serde(default)]
    reviewer: String,
    rating: i64,
    #[serde(default)]
    text: String,
}

#[derive(Debug)]
struct Reviews {
    items: Vec<Review>,
    next_id: u64,
}

type Shared = Arc<Mutex<Reviews>>;

/// The demo HTTP/JSON backend.
///
/// | route                | behaviour                                                   |
/// |----------------------|-------------------------------------------------------------|
/// | `GET /`              | JSON index of the routes                                    |
/// | `GET /reviews`       | `{"reviews": [...]}`, optional `?book=` filter              |
/// | `GET /reviews/{id}`  | one review, 404 JSON if unknown                             |
/// | `POST /reviews`      | creates from `{book, rating (1-5), reviewer?, text?}`; 201 + `Location` |
/// | `GET /echo/headers`  | method, path, authority, query, args, headers, version (JSON) |
/// | `POST /echo/body`    | streams the body back with the request's content type      |
/// | `GET /delay/{ms}`    | sleeps (at most 30 s) then answers 200 JSON                 |
/// | `GET /status/{code}` | answers with that status (200-599) and a JSON body          |
/// | `GET /html`          | a small `text/html` page                                    |
/// | `GET /stream/{n}`    | `application/x-ndjson`, n lines (at most 1000) 10 ms apart  |
///
/// Errors are JSON: `{"error": {"code": 404, "message": "..."}}`. Seeded
/// reviews: `1` and `2` for `shelves/1/books/1`, `3` for `shelves/2/books/1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpBackend;

impl HttpBackend {
    /// The routes, with a freshly seeded review store.
    pub fn router() -> Router {
        let state: Shared = Arc::new(Mutex::new(seed()));
        Router::new()
            .route("/", get(index))
            .route("/reviews", get(list_reviews).post(create_review))
            .route("/reviews/{id}", get(get_review))
            .route("/echo/headers", get(echo_headers))
            .route("/echo/body", post(echo_body))
            .route("/delay/{ms}", get(delay))
            .route("/status/{code}", get(status))
            .route("/html", get(html))
            .route("/stream/{n}", get(stream_lines))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(state)
    }

    /// Serves [`HttpBackend::router`] on `listener` until `shutdown`
    /// completes.
    pub async fn serve(
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            // Only a latency optimisation; a failure is harmless.
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, Self::router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// A JSON error response.
fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code.as_u16(), "message": message.into()}});
    (code, Json(body)).into_response()
}

async fn index() -> Json<Value> {
    Json(json!({
        "service": "omnigate demo HTTP backend",
        "routes": [
            "GET /reviews",
            "GET /reviews/{id}",
            "POST /reviews",
            "GET /echo/headers",
            "POST /echo/body",
            "GET /delay/{ms}",
            "GET /status/{code}",
            "GET /html",
            "GET /stream/{n}",
        ],
    }))
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn list_reviews(
    State(reviews): State<Shared>,
    Query(params): Query<Vec<(String, String)>>,
) -> Json<Value> {
    let book = params
        .iter()
        .find(|(key, _)| key == "book")
        .map(|(_, value)| value.as_str());
    let reviews = lock(&reviews);
    let items: Vec<&Review> = reviews
        .items
        .iter()
        .filter(|review| book.is_none_or(|book| review.book == book))
        .collect();
    Json(json!({ "reviews": items }))
}

async fn get_review(State(reviews): State<Shared>, Path(id): Path<String>) -> Response {
    let reviews = lock(&reviews);
    match reviews.items.iter().find(|review| review.id == id) {
        Some(review) => Json(review).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("review {id} not found")),
    }
}

async fn create_review(State(reviews): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        );
    }
    let new: NewReview = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid review: {e}")),
    };
    if new.book.trim().is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "book must not be empty");
    }
    let Some(rating) = u8::try_from(new.rating)
        .ok()
        .filter(|r| (1..=5).contains(r))
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rating must be between 1 and 5",
        );
    };
    let review = {
        let mut reviews = lock(&reviews);
        let review = Review {
            id: reviews.next_id.to_string(),
            book: new.book,
            reviewer: if new.reviewer.is_empty() {
                "anonymous".to_owned()
            } else {
                new.reviewer
            },
            rating,
            text: new.text,
        };
        reviews.next_id += 1;
        reviews.items.push(review.clone());
        review
    };
    let mut response = (StatusCode::CREATED, Json(&review)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/reviews/{}", review.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn echo_headers(
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Json<Value> {
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        header_map
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    let mut args: BTreeMap<String, Value> = BTreeMap::new();
    for (key, value) in params {
        match args.get_mut(&key) {
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
            None => {
                args.insert(key, Value::String(value));
            }
        }
    }
    // HTTP/1.1 carries the authority in `Host`, HTTP/2 in the URI.
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| header_map.get("host").cloned());
    Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "authority": authority,
        "query": uri.query(),
        "args": args,
        "headers": header_map,
        "version": format!("{version:?}"),
    }))
}

async fn echo_body(headers: HeaderMap, body: Body) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = Response::new(Body::from_stream(body.into_data_stream()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

async fn delay(Path(ms): Path<String>) -> Response {
    let Some(ms) = ms.parse::<u64>().ok().filter(|ms| *ms <= MAX_DELAY_MS) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("delay must be a number of milliseconds up to {MAX_DELAY_MS}"),
        );
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "delayed_ms": ms })).into_response()
}

async fn status(Path(code): Path<String>) -> Response {
    let Some(code) = code
        .parse::<u16>()
        .ok()
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "status must be a number between 200 and 599",
        );
    };
    let body = json!({
        "status": code.as_u16(),
        "reason": code.canonical_reason().unwrap_or(""),
    });
    (code, Json(body)).into_response()
}

async fn html() -> Html<&'static str> {
    Html(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <title>omnigate demo</title></head>\n<body>\n<h1>omnigate demo</h1>\n\
         <p>This page is served by the demo HTTP backend.</p>\n</body>\n</html>\n",
    )
}

async fn stream_lines(Path(n): Path<String>) -> Response {
    let Some(n) = n.parse::<u64>().ok().filter(|n| *n <= MAX_STREAM_LINES) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("line count must be a number up to {MAX_STREAM_LINES}"),
        );
    };
    let lines = futures_util::stream::unfold(0_u64, move |i| async move {
        if i >= n {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(STREAM_INTERVAL).await;
        }
        let line = format!("{}\n", json!({"line": i + 1, "of": n}));
        Some((Ok::<_, Infallible>(Bytes::from(line)), i + 1))
    });
    let mut response = Response::new(Body::from_stream(lines));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

fn seed() -> Reviews {
    let review = |id: &str, book: &str, reviewer: &str, rating: u8, text: &str| Review {
        id: id.to_owned(),
        book: book.to_owned(),
        reviewer: reviewer.to_owned(),
        rating,
        text: text.to_owned(),
    };
    Reviews {
        items: vec![
            review(
                "1",
                "shelves/1/books/1",
                "marta",
                5,
                "Quietly devastating; the orchard scenes stay with you.",
            ),
            review(
                "2",
                "shelves/1/books/1",
                "lee",
                4,
                "Slow start, wonderful last third.",
            ),
            review(
                "3",
                "shelves/2/books/1",
                "sam",
                5,
                "The maps alone are worth the price.",
            ),
        ],
        next_id: 4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::{BodyExt as _, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tokio::sync::oneshot;

    type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

    async fn spawn() -> (TestClient, String, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(HttpBackend::serve(listener, async {
            let _ = stopped.await;
        }));
        let client = Client::builder(TokioExecutor::new()).build_http();
        (client, base, stop)
    }

    async fn send(
        client: &TestClient,
        request: axum::http::Request<Full<Bytes>>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let response = client.request(request).await.expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, body)
    }

    fn get(uri: &str) -> axum::http::Request<Full<Bytes>> {
        axum::http::Request::get(uri)
            .body(Full::default())
            .expect("valid request")
    }

    fn json_body(body: &[u8]) -> Value {
        serde_json::from_slice(body).expect("JSON body")
    }

    #[tokio::test]
    async fn echo_headers_reports_the_request() {
        let (client, base, _stop) = spawn().await;
        let request = axum::http::Request::get(format!("{base}/echo/headers?a=1&b=2&a=3"))
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
            .header("x-custom", "one")
            .header("x-custom", "two")
            .body(Full::default())
            .expect("valid request");
        let (status, headers, body) = send(&client, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers.get(header::CONTENT_TYPE).expect("content type"),
            "application/json"
        );
        let echo = json_body(&body);
        assert_eq!(echo["method"], "GET");
        assert_eq!(echo["path"], "/echo/headers");
        assert_eq!(echo["query"], "a=1&b=2&a=3");
        assert_eq!(echo["args"]["a"], json!(["1", "3"]));
        assert_eq!(echo["args"]["b"], "2");
        assert_eq!(echo["headers"]["x-forwarded-for"], "203.0.113.7");
        assert_eq!(echo["headers"]["x-custom"], "one, two");
        assert_eq!(echo["headers"]["host"], base.trim_start_matches("http://"));
        assert_eq!(echo["authority"], echo["headers"]["host"]);
        assert_eq!(echo["version"], "HTTP/1.1");
    }

    #[tokio::test]
    async fn reviews_crud_and_helpers() {
        let (client, base, _stop) = spawn().await;
        let (status, _, body) = send(
            &client,
            get(&format!("{base}/reviews?book=shelves/1/books/1")),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            json_body(&body)["reviews"].as_array().map(Vec::len),
            Some(2)
        );

        let create = axum::http::Request::post(format!("{base}/reviews"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::from(
                r#"{"book":"shelves/2/books/2","rating":4,"text":"Buzzing."}"#,
            ))
            .expect("valid request");
        let (status, headers, body) = send(&client, create).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            headers.get(header::LOCATION).expect("location"),
            "/reviews/4"
        );
        assert_eq!(json_body(&body)["reviewer"], "anonymous");
        let (status, _, body) = send(&client, get(&format!("{base}/reviews/4"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_body(&body)["rating"], 4);

        let invalid = axum::http::Request::post(format!("{base}/reviews"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::from(r#"{"book":"x","rating":9}"#))
            .expect("valid request");
        let (status, _, body) = send(&client, invalid).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json_body(&body)["error"]["code"], 422);

        let (status, _, body) = send(&client, get(&format!("{base}/reviews/404"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json_body(&body)["error"]["message"], "review 404 not found");

        let (status, _, body) = send(&client, get(&format!("{base}/status/503"))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json_body(&body)["status"], 503);

        let echo = axum::http::Request::post(format!("{base}/echo/body"))
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Full::from("hello body"))
            .expect("valid request");
        let (status, headers, body) = send(&client, echo).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers.get(header::CONTENT_TYPE).expect("type"),
            "text/plain"
        );
        assert_eq!(&body[..], b"hello body");

        let (_, headers, body) = send(&client, get(&format!("{base}/html"))).await;
        assert!(headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html")));
        assert!(body.starts_with(b"<!doctype html>"));

        let (status, _, body) = send(&client, get(&format!("{base}/stream/3"))).await;
        assert_eq!(status, StatusCode::OK);
        let lines: Vec<Value> = body
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(json_body)
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], json!({"line": 3, "of": 3}));

        let started = tokio::time::Instant::now();
        let (status, _, _) = send(&client, get(&format!("{base}/delay/50"))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(50));

        let (status, _, body) = send(&client, get(&format!("{base}/nowhere"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json_body(&body)["error"]["code"], 404);
    }
}
