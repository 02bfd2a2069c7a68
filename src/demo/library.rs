//! `library.v1.Library`: an in-memory store of shelves and books.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::stream::{self, Stream, StreamExt};
use prost_types::{FieldMask, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::errors::{self, Violations};
use super::pb::google::api::HttpBody;
use super::pb::library::v1::{
    book, library_server, shelf_event, AnnotateBookRequest, Book, BookAnnotation, BookFilter,
    Chapter, CreateBookRequest, CreateShelfRequest, DeleteBookRequest, DeleteShelfRequest, Ebook,
    Genre, GetBookCoverRequest, GetBookRequest, GetShelfRequest, GetShelfStatsRequest,
    GetShelfStatsResponse, ImportBooksRequest, ImportBooksResponse, ListBooksRequest,
    ListBooksResponse, ListShelvesRequest, ListShelvesResponse, Paperback, PublishBookRequest,
    SearchBooksRequest, SearchBooksResponse, Shelf, ShelfEvent, ShelfStats, UpdateBookCoverRequest,
    UpdateBookCoverResponse, UpdateBookRequest, WatchShelfRequest,
};
use super::{lock, Observer, LIBRARY_DESCRIPTOR_SET};

/// Protobuf type of shelves, used in `ResourceInfo` details.
const SHELF_TYPE: &str = "library.v1.Shelf";
/// Protobuf type of books, used in `ResourceInfo` details.
const BOOK_TYPE: &str = "library.v1.Book";
/// Default and maximum `ListBooks` page sizes.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;
/// Capacity of the change broadcast; slower watchers get DATA_LOSS.
const CHANGE_CAPACITY: usize = 1024;

/// Book fields that `UpdateBook` may write, by proto name.
const WRITABLE_FIELDS: &[&str] = &[
    "title",
    "author_id",
    "page_count",
    "edition",
    "isbn13",
    "rating",
    "weight_grams",
    "checksum",
    "illustrated",
    "genre",
    "tags",
    "labels",
    "read_time",
    "price",
    "metadata",
    "subtitle",
    "paperback",
    "ebook",
    "chapters",
    "catalogue_code",
];

/// Book fields that are set by the server only.
const OUTPUT_ONLY_FIELDS: &[&str] = &["name", "create_time", "publish_time", "state"];

type EventStream = Pin<Box<dyn Stream<Item = Result<ShelfEvent, Status>> + Send>>;
type AnnotationStream = Pin<Box<dyn Stream<Item = Result<BookAnnotation, Status>> + Send>>;

/// A change announced to `WatchShelf` streams.
#[derive(Debug, Clone)]
enum Change {
    /// An event about a book on `shelf` (a shelf id).
    Event {
        shelf: String,
        event: Box<ShelfEvent>,
    },
    /// The shelf was deleted; its watch streams end.
    ShelfDeleted { shelf: String },
}

#[derive(Debug, Clone)]
struct Cover {
    content_type: String,
    data: Vec<u8>,
}

#[derive(Debug)]
struct BookEntry {
    book: Book,
    cover: Option<Cover>,
}

#[derive(Debug)]
struct ShelfEntry {
    shelf: Shelf,
    /// Keyed by book id.
    books: BTreeMap<String, BookEntry>,
    next_book_id: u64,
}

impl ShelfEntry {
    fn new(shelf: Shelf) -> Self {
        Self {
            shelf,
            books: BTreeMap::new(),
            next_book_id: 1,
        }
    }

    /// The shelf as returned to clients, with its book count filled in.
    fn view(&self) -> Shelf {
        Shelf {
            book_count: count(self.books.len()),
            ..self.shelf.clone()
        }
    }
}

#[derive(Debug)]
struct State {
    /// Keyed by shelf id.
    shelves: BTreeMap<String, ShelfEntry>,
    next_shelf_id: u64,
    /// Sequence number of the last change.
    sequence: i64,
    /// Notes received by `AnnotateBooks`, per book name.
    notes: HashMap<String, i32>,
}

impl State {
    fn shelf(&self, id: &str) -> Result<&ShelfEntry, Status> {
        self.shelves
            .get(id)
            .ok_or_else(|| errors::not_found("Shelf", SHELF_TYPE, &shelf_name(id)))
    }

    fn shelf_mut(&mut self, id: &str) -> Result<&mut ShelfEntry, Status> {
        self.shelves
            .get_mut(id)
            .ok_or_else(|| errors::not_found("Shelf", SHELF_TYPE, &shelf_name(id)))
    }

    fn book(&self, shelf: &str, book: &str) -> Result<&BookEntry, Status> {
        self.shelf(shelf)?
            .books
            .get(book)
            .ok_or_else(|| errors::not_found("Book", BOOK_TYPE, &book_name(shelf, book)))
    }

    fn book_mut(&mut self, shelf: &str, book: &str) -> Result<&mut BookEntry, Status> {
        self.shelf_mut(shelf)?
            .books
            .get_mut(book)
            .ok_or_else(|| errors::not_found("Book", BOOK_TYPE, &book_name(shelf, book)))
    }
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    changes: broadcast::Sender<Change>,
    watchers: AtomicUsize,
    observer: Observer,
}

impl Inner {
    /// Records a change and tells the watchers. Called with the state locked
    /// so that sequence numbers and delivery order agree.
    fn emit(
        &self,
        state: &mut State,
        shelf: &str,
        kind: shelf_event::Kind,
        book: Book,
        changed: Option<Vec<String>>,
    ) {
        state.sequence += 1;
        let event = ShelfEvent {
            kind: kind as i32,
            book: Some(book),
            event_time: Some(now()),
            details: changed
                .map(|paths| errors::pack("google.protobuf.FieldMask", &FieldMask { paths })),
            sequence: state.sequence,
        };
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(Change::Event {
            shelf: shelf.to_owned(),
            event: Box::new(event),
        });
    }
}

/// Counts live `WatchShelf` streams; decrements when the stream is dropped.
#[derive(Debug)]
struct WatcherGuard(Arc<Inner>);

impl WatcherGuard {
    fn new(inner: Arc<Inner>) -> Self {
        inner.watchers.fetch_add(1, Ordering::SeqCst);
        Self(inner)
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The demo `library.v1.Library` service: a cloneable handle to an in-memory
/// library plus call counters for tests.
///
/// Seeded data (see [`LibraryBackend::new`]):
///
/// | name                | title                       | author | state     |
/// |---------------------|-----------------------------|--------|-----------|
/// | `shelves/1/books/1` | The Glass Orchard           | 1      | PUBLISHED |
/// | `shelves/1/books/2` | Stars Beneath the Ice       | 2      | PUBLISHED |
/// | `shelves/1/books/3` | Notes Toward a Lighthouse   | 1      | DRAFT     |
/// | `shelves/2/books/1` | A Brief Atlas of Rivers     | 3      | PUBLISHED |
/// | `shelves/2/books/2` | The Quiet Hive              | 2      | PUBLISHED |
///
/// `shelves/1` ("Fiction") and `shelves/2` ("Non-fiction") exist; new shelves
/// are numbered from 3 and new books per shelf continue the numbering. Only
/// `shelves/1/books/1` has a cover (`image/svg+xml`).
#[derive(Debug, Clone)]
pub struct LibraryBackend {
    inner: Arc<Inner>,
}

impl Default for LibraryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl LibraryBackend {
    /// A library holding the seeded shelves and books.
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(CHANGE_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(seed()),
                changes,
                watchers: AtomicUsize::new(0),
                observer: Observer::default(),
            }),
        }
    }

    /// Makes every unary call sleep `delay` before doing its work. Shared by
    /// all clones of this handle.
    pub fn with_delay(self, delay: Duration) -> Self {
        self.set_delay(delay);
        self
    }

    /// Changes the unary-call delay of a running backend.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.observer.set_delay(delay);
    }

    /// How many times `method` (short name, e.g. `"GetBook"`) was called.
    pub fn calls(&self, method: &str) -> usize {
        self.inner.observer.calls(method)
    }

    /// Number of `WatchShelf` streams currently open.
    pub fn active_watchers(&self) -> usize {
        self.inner.watchers.load(Ordering::SeqCst)
    }

    /// Request metadata of the most recent call, of any method.
    pub fn last_metadata(&self) -> Option<MetadataMap> {
        self.inner.observer.last_metadata()
    }

    /// The tonic service for this backend, for callers building their own
    /// server.
    pub fn into_service(self) -> library_server::LibraryServer<Self> {
        library_server::LibraryServer::new(self)
    }

    /// Serves `library.v1.Library`, gRPC reflection (v1 and v1alpha) and
    /// health checking on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        super::serve_grpc(
            self.into_service(),
            LIBRARY_DESCRIPTOR_SET,
            listener,
            shutdown,
        )
        .await
    }

    /// Counts a unary call, remembers its metadata and applies the delay.
    async fn unary<T>(&self, method: &'static str, request: &Request<T>) {
        self.inner.observer.unary(method, request.metadata()).await;
    }

    /// Counts a streaming call and remembers its metadata (no delay).
    fn streaming<T>(&self, method: &'static str, request: &Request<T>) {
        self.inner.observer.record(method, request.metadata());
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Creates one book; shared by CreateBook and ImportBooks.
    fn create_book(&self, parent: &str, book: Option<Book>, book_id: &str) -> Result<Book, Status> {
        let shelf = shelf_id("parent", parent)?;
        let Some(mut book) = book else {
            return Err(errors::invalid("book", "REQUIRED", "book is required"));
        };
        if !book_id.is_empty() && !valid_id(book_id) {
            return Err(errors::invalid(
                "book_id",
                "INVALID_ID",
                "book_id must be 1-63 lowercase letters, digits or dashes",
            ));
        }
        validate_book(&book)?;

        let mut state = self.state();
        let entry = state.shelf_mut(shelf)?;
        let id = if book_id.is_empty() {
            next_free_id(&mut entry.next_book_id, |id| entry.books.contains_key(id))
        } else if entry.books.contains_key(book_id) {
            return Err(errors::already_exists(
                "Book",
                BOOK_TYPE,
                &book_name(shelf, book_id),
            ));
        } else {
            book_id.to_owned()
        };
        book.name = book_name(shelf, &id);
        book.create_time = Some(now());
        book.publish_time = None;
        book.state = book::State::Draft as i32;
        entry.books.insert(
            id,
            BookEntry {
                book: book.clone(),
                cover: None,
            },
        );
        self.inner.emit(
            &mut state,
            shelf,
            shelf_event::Kind::Created,
            book.clone(),
            None,
        );
        Ok(book)
    }

    /// Handles one note of an AnnotateBooks stream.
    fn annotate(
        &self,
        request: AnnotateBookRequest,
        sequence: i64,
    ) -> Result<BookAnnotation, Status> {
        let (shelf, book) = book_ids("name", &request.name)?;
        let note = request.note.trim();
        if note.is_empty() {
            return Err(errors::invalid(
                "note",
                "REQUIRED",
                "note must not be empty",
            ));
        }
        let mut state = self.state();
        let title = state.book(shelf, book)?.book.title.clone();
        let note_count = state.notes.entry(request.name.clone()).or_default();
        *note_count += 1;
        Ok(BookAnnotation {
            name: request.name.clone(),
            title,
            note: note.to_owned(),
            word_count: count(note.split_whitespace().count()),
            note_count: *note_count,
            sequence,
        })
    }
}

#[tonic::async_trait]
impl library_server::Library for LibraryBackend {
    async fn list_shelves(
        &self,
        request: Request<ListShelvesRequest>,
    ) -> Result<Response<ListShelvesResponse>, Status> {
        self.unary("ListShelves", &request).await;
        let state = self.state();
        let shelves = state.shelves.values().map(ShelfEntry::view).collect();
        Ok(Response::new(ListShelvesResponse { shelves }))
    }

    async fn get_shelf(
        &self,
        request: Request<GetShelfRequest>,
    ) -> Result<Response<Shelf>, Status> {
        self.unary("GetShelf", &request).await;
        let id = shelf_id("name", &request.get_ref().name)?;
        Ok(Response::new(self.state().shelf(id)?.view()))
    }

    async fn create_shelf(
        &self,
        request: Request<CreateShelfRequest>,
    ) -> Result<Response<Shelf>, Status> {
        self.unary("CreateShelf", &request).await;
        let request = request.into_inner();
        let mut violations = Violations::new();
        match &request.shelf {
            None => violations.add("shelf", "REQUIRED", "shelf is required"),
            Some(shelf) if shelf.theme.trim().is_empty() => {
                violations.add("shelf.theme", "REQUIRED", "theme must not be empty");
            }
            Some(_) => {}
        }
        if !request.shelf_id.is_empty() && !valid_id(&request.shelf_id) {
            violations.add(
                "shelf_id",
                "INVALID_ID",
                "shelf_id must be 1-63 lowercase letters, digits or dashes",
            );
        }
        violations.check()?;
        if let Some(status) = errors::trigger_for_id(&request.shelf_id) {
            return Err(status);
        }
        let theme = request.shelf.map(|s| s.theme).unwrap_or_default();

        let mut state = self.state();
        let id = if request.shelf_id.is_empty() {
            let State {
                shelves,
                next_shelf_id,
                ..
            } = &mut *state;
            next_free_id(next_shelf_id, |id| shelves.contains_key(id))
        } else if state.shelves.contains_key(&request.shelf_id) {
            return Err(errors::already_exists(
                "Shelf",
                SHELF_TYPE,
                &shelf_name(&request.shelf_id),
            ));
        } else {
            request.shelf_id
        };
        let entry = ShelfEntry::new(Shelf {
            name: shelf_name(&id),
            theme,
            book_count: 0,
            create_time: Some(now()),
        });
        let shelf = entry.view();
        state.shelves.insert(id, entry);
        Ok(Response::new(shelf))
    }

    async fn delete_shelf(
        &self,
        request: Request<DeleteShelfRequest>,
    ) -> Result<Response<()>, Status> {
        self.unary("DeleteShelf", &request).await;
        let request = request.get_ref();
        let id = shelf_id("name", &request.name)?;
        let mut state = self.state();
        let entry = state.shelf(id)?;
        if !entry.books.is_empty() && !request.force {
            return Err(errors::failed_precondition(
                "NOT_EMPTY",
                &request.name,
                "shelf still holds books; set force to delete them too",
            ));
        }
        let Some(entry) = state.shelves.remove(id) else {
            return Err(errors::not_found("Shelf", SHELF_TYPE, &request.name));
        };
        for book in entry.books.into_values() {
            state.notes.remove(&book.book.name);
            self.inner
                .emit(&mut state, id, shelf_event::Kind::Deleted, book.book, None);
        }
        let _ = self.inner.changes.send(Change::ShelfDeleted {
            shelf: id.to_owned(),
        });
        Ok(Response::new(()))
    }

    async fn get_shelf_stats(
        &self,
        request: Request<GetShelfStatsRequest>,
    ) -> Result<Response<GetShelfStatsResponse>, Status> {
        self.unary("GetShelfStats", &request).await;
        let name = request.into_inner().name;
        let id = shelf_id("name", &name)?;
        let state = self.state();
        let entry = state.shelf(id)?;
        let mut stats = ShelfStats {
            book_count: count(entry.books.len()),
            ..ShelfStats::default()
        };
        for BookEntry { book, .. } in entry.books.values() {
            if book.state == book::State::Published as i32 {
                stats.published_count += 1;
            }
            stats.total_pages += book.page_count;
            let genre = Genre::try_from(book.genre).unwrap_or_default();
            *stats
                .genre_counts
                .entry(genre.as_str_name().to_owned())
                .or_default() += 1;
        }
        Ok(Response::new(GetShelfStatsResponse {
            name,
            stats: Some(stats),
        }))
    }

    async fn list_books(
        &self,
        request: Request<ListBooksRequest>,
    ) -> Result<Response<ListBooksResponse>, Status> {
        self.unary("ListBooks", &request).await;
        let request = request.into_inner();
        let shelf = shelf_id("parent", &request.parent)?;
        let mut violations = Violations::new();
        let page_size = match request.page_size {
            None | Some(0) => DEFAULT_PAGE_SIZE,
            Some(n) => match usize::try_from(n) {
                Ok(n) => n.min(MAX_PAGE_SIZE),
                Err(_) => {
                    violations.add(
                        "page_size",
                        "OUT_OF_RANGE",
                        "page_size must not be negative",
                    );
                    DEFAULT_PAGE_SIZE
                }
            },
        };
        let offset = if request.page_token.is_empty() {
            0
        } else if let Ok(offset) = request.page_token.parse::<usize>() {
            offset
        } else {
            violations.add(
                "page_token",
                "INVALID_TOKEN",
                "page_token was not issued by ListBooks",
            );
            0
        };
        if Genre::try_from(request.genre).is_err() {
            violations.add("genre", "INVALID_ENUM", "unknown genre");
        }
        violations.check()?;

        let state = self.state();
        let matching: Vec<&Book> = state
            .shelf(shelf)?
            .books
            .values()
            .map(|entry| &entry.book)
            .filter(|book| matches_filters(book, &request))
            .collect();
        let total_size = count(matching.len());
        let books: Vec<Book> = matching
            .iter()
            .skip(offset)
            .take(page_size)
            .map(|&book| book.clone())
            .collect();
        let next = offset.saturating_add(books.len());
        let next_page_token = if next < matching.len() {
            next.to_string()
        } else {
            String::new()
        };
        Ok(Response::new(ListBooksResponse {
            books,
            next_page_token,
            total_size,
        }))
    }

    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        self.unary("GetBook", &request).await;
        let (shelf, book) = book_ids("name", &request.get_ref().name)?;
        Ok(Response::new(self.state().book(shelf, book)?.book.clone()))
    }

    async fn create_book(
        &self,
        request: Request<CreateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        self.unary("CreateBook", &request).await;
        let request = request.into_inner();
        let book = self.create_book(&request.parent, request.book, &request.book_id)?;
        Ok(Response::new(book))
    }

    async fn update_book(
        &self,
        request: Request<UpdateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        self.unary("UpdateBook", &request).await;
        let request = request.into_inner();
        let Some(patch) = request.book else {
            return Err(errors::invalid("book", "REQUIRED", "book is required"));
        };
        let (shelf, book_id) = book_ids("book.name", &patch.name)?;
        let requested = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let paths: Vec<String> = if requested.is_empty() || requested == ["*"] {
            WRITABLE_FIELDS.iter().map(|&f| f.to_owned()).collect()
        } else {
            let mut violations = Violations::new();
            for path in &requested {
                if OUTPUT_ONLY_FIELDS.contains(&path.as_str()) {
                    violations.add(
                        "update_mask",
                        "OUTPUT_ONLY",
                        format!("`{path}` is set by the server and cannot be updated"),
                    );
                } else if !WRITABLE_FIELDS.contains(&path.as_str()) {
                    violations.add(
                        "update_mask",
                        "UNKNOWN_FIELD",
                        format!("`{path}` is not a field of library.v1.Book"),
                    );
                }
            }
            violations.check()?;
            requested
        };

        let mut state = self.state();
        let entry = state.book_mut(shelf, book_id)?;
        let mut updated = entry.book.clone();
        for path in &paths {
            apply_field(&mut updated, &patch, path);
        }
        validate_book(&updated)?;
        entry.book = updated.clone();
        self.inner.emit(
            &mut state,
            shelf,
            shelf_event::Kind::Updated,
            updated.clone(),
            Some(paths),
        );
        Ok(Response::new(updated))
    }

    async fn delete_book(
        &self,
        request: Request<DeleteBookRequest>,
    ) -> Result<Response<()>, Status> {
        self.unary("DeleteBook", &request).await;
        let name = &request.get_ref().name;
        let (shelf, book) = book_ids("name", name)?;
        let mut state = self.state();
        state.book(shelf, book)?;
        let removed = state.shelf_mut(shelf)?.books.remove(book);
        state.notes.remove(name);
        if let Some(removed) = removed {
            self.inner.emit(
                &mut state,
                shelf,
                shelf_event::Kind::Deleted,
                removed.book,
                None,
            );
        }
        Ok(Response::new(()))
    }

    async fn publish_book(
        &self,
        request: Request<PublishBookRequest>,
    ) -> Result<Response<Book>, Status> {
        self.unary("PublishBook", &request).await;
        let request = request.into_inner();
        let (shelf, book_id) = book_ids("name", &request.name)?;
        let mut state = self.state();
        let entry = state.book_mut(shelf, book_id)?;
        if entry.book.state == book::State::Published as i32 {
            return Err(errors::failed_precondition(
                "STATE",
                &request.name,
                "book is already published",
            ));
        }
        entry.book.state = book::State::Published as i32;
        entry.book.publish_time = Some(request.publish_time.unwrap_or_else(now));
        let book = entry.book.clone();
        self.inner.emit(
            &mut state,
            shelf,
            shelf_event::Kind::Updated,
            book.clone(),
            Some(vec!["state".to_owned(), "publish_time".to_owned()]),
        );
        Ok(Response::new(book))
    }

    async fn search_books(
        &self,
        request: Request<SearchBooksRequest>,
    ) -> Result<Response<SearchBooksResponse>, Status> {
        self.unary("SearchBooks", &request).await;
        let request = request.into_inner();
        let query = request.query.trim().to_lowercase();
        let mut violations = Violations::new();
        if query.is_empty() {
            violations.add("query", "REQUIRED", "query must not be empty");
        }
        let limit = match usize::try_from(request.limit) {
            Ok(0) => usize::MAX,
            Ok(limit) => limit,
            Err(_) => {
                violations.add("limit", "OUT_OF_RANGE", "limit must not be negative");
                0
            }
        };
        violations.check()?;
        let state = self.state();
        let books = state
            .shelves
            .values()
            .flat_map(|shelf| shelf.books.values())
            .map(|entry| &entry.book)
            .filter(|book| book.state == book::State::Published as i32)
            .filter(|book| {
                book.title.to_lowercase().contains(&query)
                    || book
                        .subtitle
                        .as_ref()
                        .is_some_and(|s| s.to_lowercase().contains(&query))
                    || book.tags.iter().any(|t| t.to_lowercase().contains(&query))
            })
            .take(limit)
            .cloned()
            .collect();
        Ok(Response::new(SearchBooksResponse { books }))
    }

    async fn get_book_cover(
        &self,
        request: Request<GetBookCoverRequest>,
    ) -> Result<Response<HttpBody>, Status> {
        self.unary("GetBookCover", &request).await;
        let name = &request.get_ref().name;
        let (shelf, book) = book_ids("name", name)?;
        let state = self.state();
        let cover = state
            .book(shelf, book)?
            .cover
            .clone()
            .ok_or_else(|| errors::not_found("Cover of book", "library.v1.BookCover", name))?;
        Ok(Response::new(HttpBody {
            content_type: cover.content_type,
            data: cover.data,
            extensions: Vec::new(),
        }))
    }

    async fn update_book_cover(
        &self,
        request: Request<UpdateBookCoverRequest>,
    ) -> Result<Response<UpdateBookCoverResponse>, Status> {
        self.unary("UpdateBookCover", &request).await;
        let request = request.into_inner();
        let (shelf, book) = book_ids("name", &request.name)?;
        let Some(cover) = request.cover else {
            return Err(errors::invalid("cover", "REQUIRED", "cover is required"));
        };
        let content_type = if cover.content_type.is_empty() {
            "application/octet-stream".to_owned()
        } else {
            cover.content_type
        };
        let size_bytes = i64::try_from(cover.data.len()).unwrap_or(i64::MAX);
        self.state().book_mut(shelf, book)?.cover = Some(Cover {
            content_type: content_type.clone(),
            data: cover.data,
        });
        Ok(Response::new(UpdateBookCoverResponse {
            name: request.name,
            content_type,
            size_bytes,
        }))
    }

    type WatchShelfStream = EventStream;

    async fn watch_shelf(
        &self,
        request: Request<WatchShelfRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.streaming("WatchShelf", &request);
        let request = request.into_inner();
        let shelf = shelf_id("name", &request.name)?.to_owned();
        // Subscribe and snapshot under one lock: no change is missed or
        // reported twice.
        let (initial, changes) = {
            let state = self.state();
            let entry = state.shelf(&shelf)?;
            let changes = self.inner.changes.subscribe();
            let initial: Vec<ShelfEvent> = if request.changes_only {
                Vec::new()
            } else {
                let event_time = now();
                entry
                    .books
                    .values()
                    .map(|entry| ShelfEvent {
                        kind: shelf_event::Kind::Existing as i32,
                        book: Some(entry.book.clone()),
                        event_time: Some(event_time),
                        details: None,
                        sequence: state.sequence,
                    })
                    .collect()
            };
            (initial, changes)
        };
        let guard = WatcherGuard::new(Arc::clone(&self.inner));
        let live = stream::unfold(Some((changes, shelf, guard)), |watch| async move {
            let (mut changes, shelf, guard) = watch?;
            loop {
                match changes.recv().await {
                    Ok(Change::Event { shelf: s, event }) if s == shelf => {
                        return Some((Ok(*event), Some((changes, shelf, guard))));
                    }
                    Ok(Change::ShelfDeleted { shelf: s }) if s == shelf => return None,
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        let status =
                            Status::data_loss(format!("watcher fell {missed} changes behind"));
                        return Some((Err(status), None));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        let events = stream::iter(initial.into_iter().map(Ok)).chain(live);
        Ok(Response::new(Box::pin(events)))
    }

    async fn import_books(
        &self,
        request: Request<Streaming<ImportBooksRequest>>,
    ) -> Result<Response<ImportBooksResponse>, Status> {
        self.streaming("ImportBooks", &request);
        let mut inbound = request.into_inner();
        let mut parent = String::new();
        let mut names = Vec::new();
        while let Some(message) = inbound.message().await? {
            if !message.parent.is_empty() {
                parent = message.parent;
            }
            if parent.is_empty() {
                return Err(errors::invalid(
                    "parent",
                    "REQUIRED",
                    "the first message must name the parent shelf",
                ));
            }
            let book = self.create_book(&parent, message.book, &message.book_id)?;
            names.push(book.name);
        }
        Ok(Response::new(ImportBooksResponse {
            imported_count: count(names.len()),
            names,
        }))
    }

    type AnnotateBooksStream = AnnotationStream;

    async fn annotate_books(
        &self,
        request: Request<Streaming<AnnotateBookRequest>>,
    ) -> Result<Response<AnnotationStream>, Status> {
        self.streaming("AnnotateBooks", &request);
        let inbound = request.into_inner();
        let backend = self.clone();
        let answers = stream::unfold(Some((inbound, backend, 0_i64)), |session| async move {
            let (mut inbound, backend, sequence) = session?;
            match inbound.message().await {
                Ok(Some(note)) => {
                    let sequence = sequence + 1;
                    match backend.annotate(note, sequence) {
                        Ok(answer) => Some((Ok(answer), Some((inbound, backend, sequence)))),
                        Err(status) => Some((Err(status), None)),
                    }
                }
                Ok(None) => None,
                Err(status) => Some((Err(status), None)),
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

/// Whether `book` passes every criterion of a ListBooks request.
fn matches_filters(book: &Book, request: &ListBooksRequest) -> bool {
    if !request.include_drafts && book.state == book::State::Draft as i32 {
        return false;
    }
    if let Some(BookFilter {
        author_id,
        title_contains,
    }) = &request.filter
    {
        if !author_id.is_empty() && &book.author_id != author_id {
            return false;
        }
        if !title_contains.is_empty()
            && !book
                .title
                .to_lowercase()
                .contains(&title_contains.to_lowercase())
        {
            return false;
        }
    }
    if !request.tags.iter().all(|tag| book.tags.contains(tag)) {
        return false;
    }
    if request.genre != Genre::Unspecified as i32 && book.genre != request.genre {
        return false;
    }
    if book.page_count < request.min_pages {
        return false;
    }
    if let Some(after) = &request.published_after {
        let published_after = book
            .publish_time
            .as_ref()
            .is_some_and(|t| (t.seconds, t.nanos) > (after.seconds, after.nanos));
        if !published_after {
            return false;
        }
    }
    request
        .labels
        .iter()
        .all(|(key, value)| book.labels.get(key) == Some(value))
}

/// Copies the field `path` (a writable proto field name) from `from` to `to`.
fn apply_field(to: &mut Book, from: &Book, path: &str) {
    match path {
        "title" => to.title.clone_from(&from.title),
        "author_id" => to.author_id.clone_from(&from.author_id),
        "page_count" => to.page_count = from.page_count,
        "edition" => to.edition = from.edition,
        "isbn13" => to.isbn13 = from.isbn13,
        "rating" => to.rating = from.rating,
        "weight_grams" => to.weight_grams = from.weight_grams,
        "checksum" => to.checksum.clone_from(&from.checksum),
        "illustrated" => to.illustrated = from.illustrated,
        "genre" => to.genre = from.genre,
        "tags" => to.tags.clone_from(&from.tags),
        "labels" => to.labels.clone_from(&from.labels),
        "read_time" => to.read_time = from.read_time,
        "price" => to.price = from.price,
        "metadata" => to.metadata.clone_from(&from.metadata),
        "subtitle" => to.subtitle.clone_from(&from.subtitle),
        "paperback" | "ebook" => to.format.clone_from(&from.format),
        "chapters" => to.chapters.clone_from(&from.chapters),
        #[allow(deprecated)]
        "catalogue_code" => to.catalogue_code.clone_from(&from.catalogue_code),
        _ => {}
    }
}

/// Checks the writable fields of a book.
fn validate_book(book: &Book) -> Result<(), Status> {
    let mut violations = Violations::new();
    if book.title.trim().is_empty() {
        violations.add("book.title", "REQUIRED", "title must not be empty");
    }
    if book.page_count < 0 {
        violations.add(
            "book.page_count",
            "OUT_OF_RANGE",
            "page_count must not be negative",
        );
    }
    if !(0.0..=5.0).contains(&book.rating) {
        violations.add(
            "book.rating",
            "OUT_OF_RANGE",
            "rating must be between 0 and 5",
        );
    }
    if Genre::try_from(book.genre).is_err() {
        violations.add("book.genre", "INVALID_ENUM", "unknown genre");
    }
    violations.check()
}

/// Whether `id` is a valid shelf or book id.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The next unused numeric id, advancing `counter`.
fn next_free_id(counter: &mut u64, taken: impl Fn(&str) -> bool) -> String {
    loop {
        let id = counter.to_string();
        *counter += 1;
        if !taken(&id) {
            return id;
        }
    }
}

/// Parses `shelves/{shelf}` (the request field `field`), applying the
/// `fail-*` error triggers.
fn shelf_id<'a>(field: &str, name: &'a str) -> Result<&'a str, Status> {
    let id = name
        .strip_prefix("shelves/")
        .filter(|id| valid_id(id))
        .ok_or_else(|| {
            errors::invalid(
                field,
                "INVALID_NAME",
                format!("`{name}` is not a shelf name (shelves/{{shelf}})"),
            )
        })?;
    match errors::trigger_for_id(id) {
        Some(status) => Err(status),
        None => Ok(id),
    }
}

/// Parses `shelves/{shelf}/books/{book}`, applying the shelf error triggers.
fn book_ids<'a>(field: &str, name: &'a str) -> Result<(&'a str, &'a str), Status> {
    let ids = name
        .strip_prefix("shelves/")
        .and_then(|rest| rest.split_once("/books/"))
        .filter(|(shelf, book)| valid_id(shelf) && valid_id(book))
        .ok_or_else(|| {
            errors::invalid(
                field,
                "INVALID_NAME",
                format!("`{name}` is not a book name (shelves/{{shelf}}/books/{{book}})"),
            )
        })?;
    match errors::trigger_for_id(ids.0) {
        Some(status) => Err(status),
        None => Ok(ids),
    }
}

fn shelf_name(id: &str) -> String {
    format!("shelves/{id}")
}

fn book_name(shelf: &str, book: &str) -> String {
    format!("shelves/{shelf}/books/{book}")
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// A length as an `int32` count, saturating.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Seconds since the epoch of the seeded timestamps (2023-11-14T22:13:20Z).
const SEED_EPOCH: i64 = 1_700_000_000;

fn seed_time(offset_secs: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: SEED_EPOCH + offset_secs,
        nanos: 0,
    })
}

fn chapter(title: &str, start_page: i32, sections: Vec<Chapter>) -> Chapter {
    Chapter {
        title: title.to_owned(),
        start_page,
        sections,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&s| s.to_owned()).collect()
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A tiny deterministic cover image.
const SEED_COVER: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"60\" height=\"90\">\
<rect width=\"60\" height=\"90\" fill=\"#2e6b4f\"/>\
<text x=\"30\" y=\"50\" font-size=\"10\" text-anchor=\"middle\" fill=\"#fff\">Orchard</text></svg>";

/// The seeded library (see [`LibraryBackend`]).
#[allow(deprecated)]
fn seed() -> State {
    let published = book::State::Published as i32;
    let fiction_books = vec![
        Book {
            title: "The Glass Orchard".to_owned(),
            author_id: "1".to_owned(),
            page_count: 412,
            edition: 2,
            isbn13: 9_780_000_000_017,
            rating: 4.5,
            weight_grams: 540.5,
            checksum: vec![0xde, 0xad, 0xbe, 0xef],
            illustrated: false,
            genre: Genre::Fiction as i32,
            tags: strings(&["classic", "award-winner"]),
            labels: labels(&[("lang", "en"), ("series", "orchard")]),
            create_time: seed_time(100),
            publish_time: seed_time(200),
            read_time: Some(prost_types::Duration {
                seconds: 9 * 3600,
                nanos: 0,
            }),
            price: Some(18.5),
            metadata: Some(prost_types::Struct {
                fields: [
                    ("publisher".to_owned(), "Northwind Press".into()),
                    ("printings".to_owned(), 3.0.into()),
                    ("signed".to_owned(), true.into()),
                ]
                .into_iter()
                .collect(),
            }),
            subtitle: Some("A Novel".to_owned()),
            format: Some(book::Format::Paperback(Paperback {
                cover_finish: "matte".to_owned(),
                height_mm: 198,
            })),
            chapters: vec![
                chapter(
                    "Seeds",
                    1,
                    vec![chapter("Spring", 1, vec![]), chapter("Frost", 24, vec![])],
                ),
                chapter("Harvest", 210, vec![]),
            ],
            catalogue_code: "LIB-0001".to_owned(),
            state: published,
            ..Book::default()
        },
        Book {
            title: "Stars Beneath the Ice".to_owned(),
            author_id: "2".to_owned(),
            page_count: 288,
            edition: 1,
            isbn13: 9_780_000_000_024,
            rating: 4.0,
            weight_grams: 0.0,
            genre: Genre::ScienceFiction as i32,
            tags: strings(&["space", "award-winner"]),
            labels: labels(&[("lang", "en")]),
            create_time: seed_time(110),
            publish_time: seed_time(300),
            read_time: Some(prost_types::Duration {
                seconds: 6 * 3600 + 1800,
                nanos: 0,
            }),
            price: Some(9.99),
            format: Some(book::Format::Ebook(Ebook {
                file_format: "epub".to_owned(),
                size_bytes: 2_400_000,
                drm: false,
            })),
            chapters: vec![chapter("Descent", 1, vec![]), chapter("Thaw", 140, vec![])],
            state: published,
            ..Book::default()
        },
        Book {
            title: "Notes Toward a Lighthouse".to_owned(),
            author_id: "1".to_owned(),
            page_count: 64,
            genre: Genre::Fiction as i32,
            tags: strings(&["work-in-progress"]),
            labels: labels(&[("lang", "en")]),
            create_time: seed_time(120),
            state: book::State::Draft as i32,
            ..Book::default()
        },
    ];
    let non_fiction_books = vec![
        Book {
            title: "A Brief Atlas of Rivers".to_owned(),
            author_id: "3".to_owned(),
            page_count: 320,
            edition: 3,
            isbn13: 9_780_000_000_031,
            rating: 4.75,
            weight_grams: 910.0,
            illustrated: true,
            genre: Genre::NonFiction as i32,
            tags: strings(&["geography", "illustrated"]),
            labels: labels(&[("lang", "fr")]),
            create_time: seed_time(130),
            publish_time: seed_time(400),
            price: Some(32.0),
            format: Some(book::Format::Paperback(Paperback {
                cover_finish: "glossy".to_owned(),
                height_mm: 240,
            })),
            state: published,
            ..Book::default()
        },
        Book {
            title: "The Quiet Hive".to_owned(),
            author_id: "2".to_owned(),
            page_count: 190,
            edition: 1,
            rating: 3.5,
            genre: Genre::NonFiction as i32,
            tags: strings(&["nature"]),
            labels: labels(&[("lang", "en")]),
            create_time: seed_time(140),
            publish_time: seed_time(500),
            state: published,
            ..Book::default()
        },
    ];

    let mut shelves = BTreeMap::new();
    for (id, theme, books) in [
        ("1", "Fiction", fiction_books),
        ("2", "Non-fiction", non_fiction_books),
    ] {
        let mut entry = ShelfEntry::new(Shelf {
            name: shelf_name(id),
            theme: theme.to_owned(),
            book_count: 0,
            create_time: seed_time(0),
        });
        for book in books {
            let book_id = next_free_id(&mut entry.next_book_id, |_| false);
            let name = book_name(id, &book_id);
            entry.books.insert(
                book_id,
                BookEntry {
                    book: Book { name, ..book },
                    cover: None,
                },
            );
        }
        shelves.insert(id.to_owned(), entry);
    }
    if let Some(first) = shelves
        .get_mut("1")
        .and_then(|shelf| shelf.books.get_mut("1"))
    {
        first.cover = Some(Cover {
            content_type: "image/svg+xml".to_owned(),
            data: SEED_COVER.as_bytes().to_vec(),
        });
    }
    State {
        shelves,
        next_shelf_id: 3,
        sequence: 0,
        notes: HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::demo::pb::google::rpc;
    use crate::demo::pb::library::v1::library_client::LibraryClient;
    use crate::demo::{unpack_detail, LIBRARY_SERVICE};
    use tokio::sync::oneshot;
    use tonic::transport::Channel;
    use tonic::Code;

    struct Harness {
        client: LibraryClient<Channel>,
        backend: LibraryBackend,
        url: String,
        _stop: oneshot::Sender<()>,
    }

    async fn spawn(backend: LibraryBackend) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(backend.clone().serve(listener, async {
            let _ = stopped.await;
        }));
        let client = LibraryClient::connect(url.clone()).await.expect("connect");
        Harness {
            client,
            backend,
            url,
            _stop: stop,
        }
    }

    async fn harness() -> Harness {
        spawn(LibraryBackend::new()).await
    }

    fn list(parent: &str) -> ListBooksRequest {
        ListBooksRequest {
            parent: parent.to_owned(),
            ..ListBooksRequest::default()
        }
    }

    fn titles(books: &[Book]) -> Vec<&str> {
        books.iter().map(|b| b.title.as_str()).collect()
    }

    fn new_book(title: &str) -> Book {
        Book {
            title: title.to_owned(),
            author_id: "3".to_owned(),
            page_count: 10,
            ..Book::default()
        }
    }

    #[tokio::test]
    async fn seeded_data_is_present() {
        let mut h = harness().await;
        let shelves = h
            .client
            .list_shelves(ListShelvesRequest {})
            .await
            .expect("list shelves")
            .into_inner()
            .shelves;
        let summary: Vec<(&str, &str, i32)> = shelves
            .iter()
            .map(|s| (s.name.as_str(), s.theme.as_str(), s.book_count))
            .collect();
        assert_eq!(
            summary,
            [("shelves/1", "Fiction", 3), ("shelves/2", "Non-fiction", 2)]
        );

        let book = h
            .client
            .get_book(GetBookRequest {
                name: "shelves/1/books/1".to_owned(),
            })
            .await
            .expect("get book")
            .into_inner();
        assert_eq!(book.title, "The Glass Orchard");
        assert_eq!(book.author_id, "1");
        assert_eq!(book.state, book::State::Published as i32);
        assert!(matches!(book.format, Some(book::Format::Paperback(_))));
        assert_eq!(book.chapters[0].sections.len(), 2);

        let published = h.client.list_books(list("shelves/1")).await.expect("list");
        assert_eq!(
            titles(&published.get_ref().books),
            ["The Glass Orchard", "Stars Beneath the Ice"]
        );
        let all = h
            .client
            .list_books(ListBooksRequest {
                include_drafts: true,
                ..list("shelves/1")
            })
            .await
            .expect("list with drafts");
        assert_eq!(all.get_ref().books.len(), 3);
        assert_eq!(h.backend.calls("ListBooks"), 2);
        assert_eq!(h.backend.calls("GetBook"), 1);
    }

    #[tokio::test]
    async fn list_books_honours_every_filter() {
        let mut h = harness().await;
        let mut run = async |request: ListBooksRequest| {
            h.client
                .list_books(request)
                .await
                .expect("list books")
                .into_inner()
        };
        let by_tag = run(ListBooksRequest {
            tags: vec!["award-winner".to_owned(), "space".to_owned()],
            ..list("shelves/1")
        })
        .await;
        assert_eq!(titles(&by_tag.books), ["Stars Beneath the Ice"]);
        let by_genre = run(ListBooksRequest {
            genre: Genre::ScienceFiction as i32,
            ..list("shelves/1")
        })
        .await;
        assert_eq!(titles(&by_genre.books), ["Stars Beneath the Ice"]);
        let by_author = run(ListBooksRequest {
            filter: Some(BookFilter {
                author_id: "1".to_owned(),
                title_contains: String::new(),
            }),
            include_drafts: true,
            ..list("shelves/1")
        })
        .await;
        assert_eq!(
            titles(&by_author.books),
            ["The Glass Orchard", "Notes Toward a Lighthouse"]
        );
        let by_pages = run(ListBooksRequest {
            min_pages: 300,
            ..list("shelves/1")
        })
        .await;
        assert_eq!(titles(&by_pages.books), ["The Glass Orchard"]);
        let by_time = run(ListBooksRequest {
            published_after: seed_time(250),
            ..list("shelves/1")
        })
        .await;
        assert_eq!(titles(&by_time.books), ["Stars Beneath the Ice"]);
        let by_label = run(ListBooksRequest {
            labels: labels(&[("series", "orchard")]),
            ..list("shelves/1")
        })
        .await;
        assert_eq!(titles(&by_label.books), ["The Glass Orchard"]);

        let first = run(ListBooksRequest {
            page_size: Some(1),
            ..list("shelves/1")
        })
        .await;
        assert_eq!(titles(&first.books), ["The Glass Orchard"]);
        assert_eq!(first.total_size, 2);
        assert!(!first.next_page_token.is_empty());
        let second = run(ListBooksRequest {
            page_size: Some(1),
            page_token: first.next_page_token,
            ..list("shelves/1")
        })
        .await;
        assert_eq!(titles(&second.books), ["Stars Beneath the Ice"]);
        assert!(second.next_page_token.is_empty());
    }

    #[tokio::test]
    async fn missing_resources_are_not_found_with_resource_info() {
        let mut h = harness().await;
        let status = h
            .client
            .get_shelf(GetShelfRequest {
                name: "shelves/100".to_owned(),
            })
            .await
            .expect_err("unknown shelf");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "Shelf shelves/100 not found");
        let info: rpc::ResourceInfo =
            unpack_detail(&status, "google.rpc.ResourceInfo").expect("ResourceInfo detail");
        assert_eq!(info.resource_type, "library.v1.Shelf");
        assert_eq!(info.resource_name, "shelves/100");

        let status = h
            .client
            .get_book(GetBookRequest {
                name: "shelves/1/books/99".to_owned(),
            })
            .await
            .expect_err("unknown book");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "Book shelves/1/books/99 not found");
    }

    #[tokio::test]
    async fn invalid_books_are_rejected_with_bad_request() {
        let mut h = harness().await;
        let status = h
            .client
            .create_book(CreateBookRequest {
                parent: "shelves/1".to_owned(),
                book: Some(Book {
                    title: "  ".to_owned(),
                    page_count: -5,
                    ..Book::default()
                }),
                book_id: String::new(),
            })
            .await
            .expect_err("invalid book");
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad: rpc::BadRequest =
            unpack_detail(&status, "google.rpc.BadRequest").expect("BadRequest detail");
        let fields: Vec<&str> = bad
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["book.title", "book.page_count"]);

        let status = h
            .client
            .get_book(GetBookRequest {
                name: "books/1".to_owned(),
            })
            .await
            .expect_err("malformed name");
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn duplicates_and_triggers() {
        let mut h = harness().await;
        let status = h
            .client
            .create_shelf(CreateShelfRequest {
                shelf: Some(Shelf {
                    theme: "Again".to_owned(),
                    ..Shelf::default()
                }),
                shelf_id: "1".to_owned(),
            })
            .await
            .expect_err("duplicate shelf");
        assert_eq!(status.code(), Code::AlreadyExists);

        let created = h
            .client
            .create_shelf(CreateShelfRequest {
                shelf: Some(Shelf {
                    theme: "Poetry".to_owned(),
                    ..Shelf::default()
                }),
                shelf_id: String::new(),
            })
            .await
            .expect("create shelf")
            .into_inner();
        assert_eq!(created.name, "shelves/3");

        let status = h
            .client
            .get_shelf(GetShelfRequest {
                name: "shelves/fail-internal".to_owned(),
            })
            .await
            .expect_err("trigger");
        assert_eq!(status.code(), Code::Internal);
        let debug: rpc::DebugInfo =
            unpack_detail(&status, "google.rpc.DebugInfo").expect("DebugInfo detail");
        assert_eq!(debug.detail, "triggered on purpose");
        let status = h
            .client
            .list_books(list("shelves/fail-unavailable"))
            .await
            .expect_err("trigger");
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn update_publish_delete_and_covers() {
        let mut h = harness().await;
        let updated = h
            .client
            .update_book(UpdateBookRequest {
                book: Some(Book {
                    name: "shelves/1/books/3".to_owned(),
                    title: "Towards a Lighthouse".to_owned(),
                    page_count: 9999,
                    ..Book::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["title".to_owned()],
                }),
            })
            .await
            .expect("update")
            .into_inner();
        assert_eq!(updated.title, "Towards a Lighthouse");
        assert_eq!(updated.page_count, 64, "fields outside the mask are kept");

        let status = h
            .client
            .update_book(UpdateBookRequest {
                book: Some(Book {
                    name: "shelves/1/books/3".to_owned(),
                    ..Book::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["state".to_owned(), "nope".to_owned()],
                }),
            })
            .await
            .expect_err("bad mask");
        assert_eq!(status.code(), Code::InvalidArgument);

        let publish = PublishBookRequest {
            name: "shelves/1/books/3".to_owned(),
            publish_time: None,
        };
        let published = h
            .client
            .publish_book(publish.clone())
            .await
            .expect("publish")
            .into_inner();
        assert_eq!(published.state, book::State::Published as i32);
        assert!(published.publish_time.is_some());
        let again = h
            .client
            .publish_book(publish)
            .await
            .expect_err("publish twice");
        assert_eq!(again.code(), Code::FailedPrecondition);

        let cover = h
            .client
            .get_book_cover(GetBookCoverRequest {
                name: "shelves/1/books/1".to_owned(),
            })
            .await
            .expect("cover")
            .into_inner();
        assert_eq!(cover.content_type, "image/svg+xml");
        assert!(cover.data.starts_with(b"<svg"));
        let stored = h
            .client
            .update_book_cover(UpdateBookCoverRequest {
                name: "shelves/1/books/2".to_owned(),
                cover: Some(HttpBody {
                    content_type: "image/png".to_owned(),
                    data: vec![0x89, b'P', b'N', b'G'],
                    extensions: Vec::new(),
                }),
            })
            .await
            .expect("update cover")
            .into_inner();
        assert_eq!(stored.size_bytes, 4);
        let cover = h
            .client
            .get_book_cover(GetBookCoverRequest {
                name: "shelves/1/books/2".to_owned(),
            })
            .await
            .expect("new cover")
            .into_inner();
        assert_eq!(cover.content_type, "image/png");

        let stats = h
            .client
            .get_shelf_stats(GetShelfStatsRequest {
                name: "shelves/1".to_owned(),
            })
            .await
            .expect("stats")
            .into_inner()
            .stats
            .expect("stats present");
        assert_eq!((stats.book_count, stats.published_count), (3, 3));

        let status = h
            .client
            .delete_shelf(DeleteShelfRequest {
                name: "shelves/2".to_owned(),
                force: false,
            })
            .await
            .expect_err("non-empty shelf");
        assert_eq!(status.code(), Code::FailedPrecondition);
        h.client
            .delete_book(DeleteBookRequest {
                name: "shelves/2/books/2".to_owned(),
            })
            .await
            .expect("delete book");
        h.client
            .delete_shelf(DeleteShelfRequest {
                name: "shelves/2".to_owned(),
                force: true,
            })
            .await
            .expect("forced delete");
        let found = h
            .client
            .search_books(SearchBooksRequest {
                query: "LIGHTHOUSE".to_owned(),
                limit: 0,
            })
            .await
            .expect("search")
            .into_inner();
        assert_eq!(titles(&found.books), ["Towards a Lighthouse"]);
    }

    #[tokio::test]
    async fn watch_shelf_streams_changes_until_cancelled() {
        let mut h = harness().await;
        let mut events = h
            .client
            .watch_shelf(WatchShelfRequest {
                name: "shelves/2".to_owned(),
                changes_only: false,
            })
            .await
            .expect("watch")
            .into_inner();
        for _ in 0..2 {
            let event = events.message().await.expect("event").expect("open");
            assert_eq!(event.kind, shelf_event::Kind::Existing as i32);
        }
        assert_eq!(h.backend.active_watchers(), 1);

        let mut writer = LibraryClient::connect(h.url.clone())
            .await
            .expect("connect");
        writer
            .create_book(CreateBookRequest {
                parent: "shelves/2".to_owned(),
                book: Some(new_book("Maps of the Moon")),
                book_id: "moon".to_owned(),
            })
            .await
            .expect("create");
        // A change on another shelf must not show up.
        writer
            .create_book(CreateBookRequest {
                parent: "shelves/1".to_owned(),
                book: Some(new_book("Elsewhere")),
                book_id: String::new(),
            })
            .await
            .expect("create elsewhere");
        writer
            .publish_book(PublishBookRequest {
                name: "shelves/2/books/moon".to_owned(),
                publish_time: None,
            })
            .await
            .expect("publish");

        let created = events.message().await.expect("event").expect("open");
        assert_eq!(created.kind, shelf_event::Kind::Created as i32);
        let book = created.book.expect("book");
        assert_eq!(book.name, "shelves/2/books/moon");
        let updated = events.message().await.expect("event").expect("open");
        assert_eq!(updated.kind, shelf_event::Kind::Updated as i32);
        assert!(updated.sequence > created.sequence);
        let details = updated.details.expect("details");
        assert_eq!(
            details.type_url,
            "type.googleapis.com/google.protobuf.FieldMask"
        );

        drop(events);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while h.backend.active_watchers() != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "watcher not released after cancel"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn import_and_annotate_streams() {
        let mut h = harness().await;
        let requests = vec![
            ImportBooksRequest {
                parent: "shelves/2".to_owned(),
                book: Some(new_book("One")),
                book_id: String::new(),
            },
            ImportBooksRequest {
                parent: String::new(),
                book: Some(new_book("Two")),
                book_id: "two".to_owned(),
            },
            ImportBooksRequest {
                parent: String::new(),
                book: Some(new_book("Three")),
                book_id: String::new(),
            },
        ];
        let imported = h
            .client
            .import_books(tokio_stream::iter(requests))
            .await
            .expect("import")
            .into_inner();
        assert_eq!(imported.imported_count, 3);
        assert_eq!(
            imported.names,
            [
                "shelves/2/books/3",
                "shelves/2/books/two",
                "shelves/2/books/4"
            ]
        );

        let notes = ["Lovely maps", "  second   note here "].map(|note| AnnotateBookRequest {
            name: "shelves/2/books/1".to_owned(),
            note: note.to_owned(),
        });
        let mut answers = h
            .client
            .annotate_books(tokio_stream::iter(notes))
            .await
            .expect("annotate")
            .into_inner();
        let first = answers.message().await.expect("answer").expect("open");
        assert_eq!(
            (first.title.as_str(), first.word_count, first.note_count),
            ("A Brief Atlas of Rivers", 2, 1)
        );
        let second = answers.message().await.expect("answer").expect("open");
        assert_eq!(second.note, "second   note here");
        assert_eq!((second.note_count, second.sequence), (2, 2));
        assert!(answers.message().await.expect("clean end").is_none());
    }

    #[tokio::test]
    async fn delay_counts_and_metadata_are_observable() {
        let backend = LibraryBackend::new().with_delay(Duration::from_millis(30));
        let mut h = spawn(backend).await;
        let mut request = Request::new(GetShelfRequest {
            name: "shelves/1".to_owned(),
        });
        request
            .metadata_mut()
            .insert("x-demo-trace", "abc".parse().expect("ascii value"));
        let started = tokio::time::Instant::now();
        h.client.get_shelf(request).await.expect("get shelf");
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(h.backend.calls("GetShelf"), 1);
        assert_eq!(h.backend.calls("GetBook"), 0);
        let metadata = h.backend.last_metadata().expect("metadata recorded");
        assert_eq!(
            metadata.get("x-demo-trace").and_then(|v| v.to_str().ok()),
            Some("abc")
        );
    }

    #[tokio::test]
    async fn reflection_and_health_are_served() {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;

        let h = harness().await;
        let channel = Channel::from_shared(h.url.clone())
            .expect("valid url")
            .connect()
            .await
            .expect("connect");
        let mut reflection = ServerReflectionClient::new(channel.clone());
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol(format!("{LIBRARY_SERVICE}.GetBook")),
        ]
        .map(|request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        });
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect("reflection")
            .into_inner();
        let listed = responses.message().await.expect("response").expect("one");
        let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
            panic!("unexpected reflection response {listed:?}");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        for expected in [
            LIBRARY_SERVICE,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        let file = responses.message().await.expect("response").expect("two");
        let Some(MessageResponse::FileDescriptorResponse(files)) = file.message_response else {
            panic!("unexpected reflection response {file:?}");
        };
        let decoded: Vec<String> = files
            .file_descriptor_proto
            .iter()
            .map(|bytes| {
                use prost::Message as _;
                prost_types::FileDescriptorProto::decode(bytes.as_slice())
                    .expect("file descriptor")
                    .name
                    .unwrap_or_default()
            })
            .collect();
        assert!(decoded.contains(&"library/v1/library.proto".to_owned()));

        let mut health = HealthClient::new(channel);
        for service in ["", LIBRARY_SERVICE] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .expect("health check")
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
        }
    }
}
