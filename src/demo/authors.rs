//! `authors.v1.Authors`: an in-memory author registry.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prost_types::Timestamp;
use tokio::net::TcpListener;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::errors::{self, Violations};
use super::pb::authors::v1::{
    authors_server, Author, BatchGetAuthorsRequest, BatchGetAuthorsResponse, CreateAuthorRequest,
    GetAuthorRequest, ListAuthorsRequest, ListAuthorsResponse,
};
use super::{lock, Observer, AUTHORS_DESCRIPTOR_SET};

/// Protobuf type of authors, used in `ResourceInfo` details.
const AUTHOR_TYPE: &str = "authors.v1.Author";
/// Most ids one BatchGetAuthors call may ask for.
const MAX_BATCH: usize = 100;
const DEFAULT_PAGE_SIZE: usize = 50;

#[derive(Debug)]
struct State {
    /// Keyed by id.
    authors: BTreeMap<String, Author>,
    next_id: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    observer: Observer,
}

/// The demo `authors.v1.Authors` service: a cloneable handle to an in-memory
/// registry plus call counters for tests.
///
/// Seeded authors: `1` Ada Lindqvist, `2` Tomas Okafor, `3` Mei Aranda (the
/// `author_id`s of the seeded library books). New authors are numbered from 4.
#[derive(Debug, Clone)]
pub struct AuthorsBackend {
    inner: Arc<Inner>,
}

impl Default for AuthorsBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthorsBackend {
    /// A registry holding the seeded authors.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(seed()),
                observer: Observer::default(),
            }),
        }
    }

    /// Makes every call sleep `delay` before doing its work. Shared by all
    /// clones of this handle.
    pub fn with_delay(self, delay: Duration) -> Self {
        self.set_delay(delay);
        self
    }

    /// Changes the delay of a running backend.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.observer.set_delay(delay);
    }

    /// How many times `method` (short name, e.g. `"BatchGetAuthors"`) was
    /// called.
    pub fn calls(&self, method: &str) -> usize {
        self.inner.observer.calls(method)
    }

    /// Request metadata of the most recent call, of any method.
    pub fn last_metadata(&self) -> Option<MetadataMap> {
        self.inner.observer.last_metadata()
    }

    /// The tonic service for this backend, for callers building their own
    /// server.
    pub fn into_service(self) -> authors_server::AuthorsServer<Self> {
        authors_server::AuthorsServer::new(self)
    }

    /// Serves `authors.v1.Authors`, gRPC reflection (v1 and v1alpha) and
    /// health checking on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        super::serve_grpc(
            self.into_service(),
            AUTHORS_DESCRIPTOR_SET,
            listener,
            shutdown,
        )
        .await
    }

    /// Counts a unary call, remembers its metadata and applies the delay.
    async fn unary<T>(&self, method: &'static str, request: &Request<T>) {
        self.inner.observer.unary(method, request.metadata()).await;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner.state)
    }
}

/// Looks up one author, applying the `fail-*` error triggers.
fn find<'a>(state: &'a State, id: &str) -> Result<&'a Author, Status> {
    if let Some(status) = errors::trigger_for_id(id) {
        return Err(status);
    }
    state
        .authors
        .get(id)
        .ok_or_else(|| errors::not_found("Author", AUTHOR_TYPE, id))
}

#[tonic::async_trait]
impl authors_server::Authors for AuthorsBackend {
    async fn get_author(
        &self,
        request: Request<GetAuthorRequest>,
    ) -> Result<Response<Author>, Status> {
        self.unary("GetAuthor", &request).await;
        let id = &request.get_ref().id;
        if id.is_empty() {
            return Err(errors::invalid("id", "REQUIRED", "id must not be empty"));
        }
        Ok(Response::new(find(&self.state(), id)?.clone()))
    }

    async fn batch_get_authors(
        &self,
        request: Request<BatchGetAuthorsRequest>,
    ) -> Result<Response<BatchGetAuthorsResponse>, Status> {
        self.unary("BatchGetAuthors", &request).await;
        let ids = &request.get_ref().ids;
        if ids.len() > MAX_BATCH {
            return Err(errors::invalid(
                "ids",
                "TOO_MANY",
                format!("at most {MAX_BATCH} ids per call"),
            ));
        }
        let state = self.state();
        let authors = ids
            .iter()
            .map(|id| find(&state, id).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(BatchGetAuthorsResponse { authors }))
    }

    async fn list_authors(
        &self,
        request: Request<ListAuthorsRequest>,
    ) -> Result<Response<ListAuthorsResponse>, Status> {
        self.unary("ListAuthors", &request).await;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let page_size = match usize::try_from(request.page_size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) => n,
            Err(_) => {
                violations.add(
                    "page_size",
                    "OUT_OF_RANGE",
                    "page_size must not be negative",
                );
                0
            }
        };
        let offset = if request.page_token.is_empty() {
            0
        } else if let Ok(offset) = request.page_token.parse::<usize>() {
            offset
        } else {
            violations.add(
                "page_token",
                "INVALID_TOKEN",
                "page_token was not issued by ListAuthors",
            );
            0
        };
        violations.check()?;
        let state = self.state();
        let authors: Vec<Author> = state
            .authors
            .values()
            .skip(offset)
            .take(page_size)
            .cloned()
            .collect();
        let next = offset.saturating_add(authors.len());
        let next_page_token = if next < state.authors.len() {
            next.to_string()
        } else {
            String::new()
        };
        Ok(Response::new(ListAuthorsResponse {
            authors,
            next_page_token,
        }))
    }

    async fn create_author(
        &self,
        request: Request<CreateAuthorRequest>,
    ) -> Result<Response<Author>, Status> {
        self.unary("CreateAuthor", &request).await;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let Some(mut author) = request.author else {
            return Err(errors::invalid("author", "REQUIRED", "author is required"));
        };
        if author.display_name.trim().is_empty() {
            violations.add(
                "author.display_name",
                "REQUIRED",
                "display_name must not be empty",
            );
        }
        if author.birth_year < 0 {
            violations.add(
                "author.birth_year",
                "OUT_OF_RANGE",
                "birth_year must not be negative",
            );
        }
        let requested_id = if request.author_id.is_empty() {
            author.id.clone()
        } else {
            request.author_id
        };
        let id_ok = requested_id.len() <= 63
            && requested_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            violations.add(
                "author_id",
                "INVALID_ID",
                "author_id must be at most 63 letters, digits, dashes or underscores",
            );
        }
        violations.check()?;
        if let Some(status) = errors::trigger_for_id(&requested_id) {
            return Err(status);
        }

        let mut state = self.state();
        let id = if requested_id.is_empty() {
            loop {
                let id = state.next_id.to_string();
                state.next_id += 1;
                if !state.authors.contains_key(&id) {
                    break id;
                }
            }
        } else if state.authors.contains_key(&requested_id) {
            return Err(errors::already_exists("Author", AUTHOR_TYPE, &requested_id));
        } else {
            requested_id
        };
        author.id.clone_from(&id);
        author.create_time = Some(Timestamp::from(SystemTime::now()));
        state.authors.insert(id, author.clone());
        Ok(Response::new(author))
    }
}

/// The seeded registry (see [`AuthorsBackend`]).
fn seed() -> State {
    let authors = [
        (
            "1",
            "Ada Lindqvist",
            1961,
            "SE",
            &["shelves/1/books/1", "shelves/1/books/3"][..],
        ),
        (
            "2",
            "Tomas Okafor",
            1978,
            "NG",
            &["shelves/1/books/2", "shelves/2/books/2"][..],
        ),
        ("3", "Mei Aranda", 1985, "CL", &["shelves/2/books/1"][..]),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (id, display_name, birth_year, country, books))| {
        let author = Author {
            id: id.to_owned(),
            display_name: display_name.to_owned(),
            birth_year,
            book_names: books.iter().map(|&b| b.to_owned()).collect(),
            country: country.to_owned(),
            create_time: Some(Timestamp {
                seconds: 1_700_000_000 + i64::try_from(i).unwrap_or_default(),
                nanos: 0,
            }),
        };
        (id.to_owned(), author)
    })
    .collect();
    State {
        authors,
        next_id: 4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::demo::pb::authors::v1::authors_client::AuthorsClient;
    use crate::demo::pb::google::rpc;
    use crate::demo::{unpack_detail, AUTHORS_SERVICE};
    use tokio::sync::oneshot;
    use tonic::transport::Channel;
    use tonic::Code;

    async fn spawn(
        backend: AuthorsBackend,
    ) -> (AuthorsClient<Channel>, String, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(backend.serve(listener, async {
            let _ = stopped.await;
        }));
        let client = AuthorsClient::connect(url.clone()).await.expect("connect");
        (client, url, stop)
    }

    fn ids(authors: &[Author]) -> Vec<&str> {
        authors.iter().map(|a| a.id.as_str()).collect()
    }

    #[tokio::test]
    async fn lookups_follow_request_order() {
        let backend = AuthorsBackend::new();
        let (mut client, _url, _stop) = spawn(backend.clone()).await;
        let ada = client
            .get_author(GetAuthorRequest { id: "1".to_owned() })
            .await
            .expect("get author")
            .into_inner();
        assert_eq!(ada.display_name, "Ada Lindqvist");
        assert_eq!(ada.book_names, ["shelves/1/books/1", "shelves/1/books/3"]);

        let batch = client
            .batch_get_authors(BatchGetAuthorsRequest {
                ids: ["3", "1", "3", "2"].map(str::to_owned).to_vec(),
            })
            .await
            .expect("batch get")
            .into_inner();
        assert_eq!(ids(&batch.authors), ["3", "1", "3", "2"]);
        assert_eq!(backend.calls("BatchGetAuthors"), 1);

        let status = client
            .batch_get_authors(BatchGetAuthorsRequest {
                ids: vec!["1".to_owned(), "99".to_owned()],
            })
            .await
            .expect_err("unknown id");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "Author 99 not found");
        let info: rpc::ResourceInfo =
            unpack_detail(&status, "google.rpc.ResourceInfo").expect("ResourceInfo detail");
        assert_eq!(
            (info.resource_type.as_str(), info.resource_name.as_str()),
            (AUTHOR_TYPE, "99")
        );
    }

    #[tokio::test]
    async fn create_and_list() {
        let (mut client, _url, _stop) = spawn(AuthorsBackend::new()).await;
        let created = client
            .create_author(CreateAuthorRequest {
                author: Some(Author {
                    display_name: "Rui Tanaka".to_owned(),
                    birth_year: 1990,
                    ..Author::default()
                }),
                author_id: String::new(),
            })
            .await
            .expect("create")
            .into_inner();
        assert_eq!(created.id, "4");
        assert!(created.create_time.is_some());

        let status = client
            .create_author(CreateAuthorRequest {
                author: Some(Author {
                    display_name: "Copy".to_owned(),
                    ..Author::default()
                }),
                author_id: "4".to_owned(),
            })
            .await
            .expect_err("duplicate");
        assert_eq!(status.code(), Code::AlreadyExists);

        let status = client
            .create_author(CreateAuthorRequest {
                author: Some(Author::default()),
                author_id: String::new(),
            })
            .await
            .expect_err("no name");
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad: rpc::BadRequest =
            unpack_detail(&status, "google.rpc.BadRequest").expect("BadRequest detail");
        assert_eq!(bad.field_violations[0].field, "author.display_name");

        let page = client
            .list_authors(ListAuthorsRequest {
                page_size: 3,
                page_token: String::new(),
            })
            .await
            .expect("list")
            .into_inner();
        assert_eq!(ids(&page.authors), ["1", "2", "3"]);
        let rest = client
            .list_authors(ListAuthorsRequest {
                page_size: 3,
                page_token: page.next_page_token,
            })
            .await
            .expect("list rest")
            .into_inner();
        assert_eq!(ids(&rest.authors), ["4"]);
        assert!(rest.next_page_token.is_empty());
    }

    #[tokio::test]
    async fn reflection_lists_the_authors_service() {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;

        let (_client, url, _stop) = spawn(AuthorsBackend::new()).await;
        let channel = Channel::from_shared(url)
            .expect("valid url")
            .connect()
            .await
            .expect("connect");
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let response = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection")
            .into_inner()
            .message()
            .await
            .expect("response")
            .expect("one response");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection response {response:?}");
        };
        assert!(list.service.iter().any(|s| s.name == AUTHORS_SERVICE));
    }
}
