//! Where a gRPC backend's API comes from: descriptor files, server reflection, the
//! `services:` filter, and reflection refresh when a backend redeploys with a new API.

use std::time::Duration;

use omnigate::config;
use omnigate::demo;
use omnigate::descriptors::reflection::{self, DiscoverOptions};
use omnigate::gateway::Gateway;

use crate::support::{get, manifest_dir, serve, FakeGrpc, TestGateway};

/// Start a gateway from YAML as `gw.yaml` in the crate root; every error, one per line.
async fn gateway_from(yaml: &str) -> Result<TestGateway, String> {
    let checked = config::check_str("gw.yaml", yaml, &manifest_dir(), |_| None);
    let (_, gateway) = Gateway::start_checked(checked)
        .await
        .map_err(|e| e.to_string())?;
    Ok(serve(gateway).await)
}

/// One upstream named `app` at `url`, discovered by reflection, never refreshed on its own.
fn reflected(url: &str) -> String {
    format!("grpc:\n  - name: app\n    url: {url}\n    reflection_refresh: 0s\n")
}

#[tokio::test]
async fn an_upstream_described_by_a_descriptor_file_serves_rest_without_reflection() {
    let backend = FakeGrpc::library().without_reflection().spawn().await;
    let gw = gateway_from(&format!(
        "grpc:\n  - name: library\n    url: {}\n    descriptors: [descriptors/library.binpb]\n",
        backend.url()
    ))
    .await
    .expect("starts from the file alone");

    let book = get(&gw.url("/v1/shelves/1/books/2")).await;
    assert_eq!(book.status, 200, "{}", book.text());
    assert_eq!(book.json()["title"], "Stars Beneath the Ice");
    let list = get(&gw.url("/v1/shelves/1/books?include_drafts=true")).await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.json()["books"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn without_descriptor_files_a_backend_lacking_reflection_is_an_error_at_its_url() {
    let backend = FakeGrpc::library().without_reflection().spawn().await;
    let error = gateway_from(&format!(
        "listen: 127.0.0.1:0\ngrpc:\n  - name: library\n    url: {}\n",
        backend.url()
    ))
    .await
    .err()
    .expect("cannot start");
    assert!(
        error.starts_with("gw.yaml:4:5: grpc[0].url: server reflection on library: "),
        "{error}"
    );
    assert!(error.contains("`descriptors`"), "the fix is named: {error}");
}

#[tokio::test]
async fn reflection_discovery_lists_the_services_and_every_file_they_import() {
    let backends = demo::start().await.expect("backends");
    let channel = tonic::transport::Endpoint::from_shared(backends.library_url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let found = reflection::discover(channel.clone(), Duration::from_secs(10))
        .await
        .expect("discover");
    assert_eq!(found.services, [demo::LIBRARY_SERVICE]);
    let names: Vec<&str> = found.files.iter().map(|f| f.name()).collect();
    for file in [
        "library/v1/library.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/api/httpbody.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/field_mask.proto",
        "google/protobuf/descriptor.proto",
    ] {
        assert!(names.contains(&file), "{file} missing from {names:?}");
    }
    assert_eq!(found.encoded_files.len(), found.files.len());

    let mut options = DiscoverOptions::new(Duration::from_secs(10));
    options.include_infrastructure_services = true;
    let all = reflection::discover_with(channel, &options)
        .await
        .expect("discover");
    assert!(
        all.services.iter().any(|s| s == "grpc.health.v1.Health"),
        "{:?}",
        all.services
    );
}

#[tokio::test]
async fn a_services_filter_exposes_only_the_named_service() {
    let backend = FakeGrpc::library().and_authors().spawn().await;

    let everything = gateway_from(&reflected(&backend.url()))
        .await
        .expect("starts");
    assert_eq!(get(&everything.url("/v1/authors/1")).await.status, 200);
    assert_eq!(get(&everything.url("/v1/shelves/1")).await.status, 200);

    let only_authors = gateway_from(&format!(
        "{}    services: [authors.v1.Authors]\n",
        reflected(&backend.url())
    ))
    .await
    .expect("starts");
    let author = get(&only_authors.url("/v1/authors/1")).await;
    assert_eq!(author.status, 200, "{}", author.text());
    assert_eq!(author.json()["displayName"], "Ada Lindqvist");
    for hidden in ["/v1/shelves/1", "/v1/shelves/1/books/1"] {
        let r = get(&only_authors.url(hidden)).await;
        assert_eq!(r.status, 404, "{hidden} is not exposed: {}", r.text());
    }
    let auto = crate::support::post_json(
        &only_authors.url("/library.v1.Library/GetShelf"),
        serde_json::json!({"name": "shelves/1"}),
    )
    .await;
    assert_eq!(auto.status, 404, "no auto-mapping either: {}", auto.text());
}

#[tokio::test]
async fn naming_a_service_the_backend_does_not_serve_is_an_error_with_a_suggestion() {
    let backend = FakeGrpc::library().and_authors().spawn().await;
    let error = gateway_from(&format!(
        "{}    services: [authors.v1.Authors, library.v1.Libary]\n",
        reflected(&backend.url())
    ))
    .await
    .err()
    .expect("cannot start");
    assert_eq!(
        error,
        "gw.yaml:5:36: grpc[0].services[1]: service \"library.v1.Libary\" is not served by app (did you mean `library.v1.Library`?)"
    );

    let error = gateway_from(
        "grpc:\n  - name: files\n    url: http://127.0.0.1:9\n    descriptors: [descriptors/authors.binpb]\n    services: [shop.v1.Cart]\n",
    )
    .await
    .err()
    .expect("cannot start");
    assert_eq!(
        error,
        "gw.yaml:5:16: grpc[0].services[0]: service \"shop.v1.Cart\" is not served by files (it serves: authors.v1.Authors)"
    );
}

#[tokio::test]
async fn a_backend_redeployed_with_a_new_service_is_served_after_a_refresh_without_a_restart() {
    let v1 = FakeGrpc::library().spawn().await;
    let addr = v1.addr;
    let gw = gateway_from(&reflected(&v1.url())).await.expect("starts");
    assert_eq!(get(&gw.url("/v1/shelves/1/books/1")).await.status, 200);
    assert_eq!(get(&gw.url("/v1/authors/1")).await.status, 404, "not yet");
    assert_eq!(
        gw.gateway.refresh("app").await,
        Ok(false),
        "nothing changed"
    );

    // Redeploy on the same port: Library (slow this time) plus the new Authors service.
    v1.stop().await;
    let library = demo::LibraryBackend::new().with_delay(Duration::from_millis(500));
    let v2 = FakeGrpc::library_with(library.clone())
        .and_authors()
        .spawn_at(addr)
        .await;

    // A request that is in flight while the table is swapped completes.
    let url = gw.url("/v1/shelves/1/books/1");
    let in_flight = tokio::spawn(async move { get(&url).await });
    while library.calls("GetBook") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.gateway.refresh("app").await, Ok(true), "the API changed");
    let book = in_flight.await.expect("join");
    assert_eq!(book.status, 200, "{}", book.text());

    let author = get(&gw.url("/v1/authors/1")).await;
    assert_eq!(author.status, 200, "{}", author.text());
    assert_eq!(author.json()["displayName"], "Ada Lindqvist");
    assert_eq!(
        gw.gateway.refresh("app").await,
        Ok(false),
        "nothing changed since"
    );
    drop(v2);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_table_until_the_backend_is_back() {
    let v1 = FakeGrpc::library().spawn().await;
    let addr = v1.addr;
    let gw = gateway_from(&reflected(&v1.url())).await.expect("starts");
    let book = gw.url("/v1/shelves/1/books/1");
    assert_eq!(get(&book).await.status, 200);

    v1.stop().await;
    let refresh = gw.gateway.refresh("app").await;
    assert!(refresh.is_err(), "the backend is down: {refresh:?}");
    let down = get(&book).await;
    assert_eq!(
        down.status,
        502,
        "still routed, upstream down: {}",
        down.text()
    );
    let methods = &gw.gateway.snapshot().table.methods;
    assert!(methods.contains_key("library.v1.Library/GetBook"));

    let _v2 = FakeGrpc::library().spawn_at(addr).await;
    let mut status = 0;
    for _ in 0..100 {
        status = get(&book).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "served again once the backend is back");
    assert_eq!(
        gw.gateway.refresh("app").await,
        Ok(false),
        "same API as before"
    );
}

#[tokio::test]
async fn a_refresh_interval_picks_up_a_redeploy_on_its_own() {
    let v1 = FakeGrpc::authors_only().spawn().await;
    let addr = v1.addr;
    let gw = gateway_from(&format!(
        "grpc:\n  - name: app\n    url: {}\n    reflection_refresh: 100ms\n",
        v1.url()
    ))
    .await
    .expect("starts");
    assert_eq!(get(&gw.url("/v1/shelves/1")).await.status, 404);

    v1.stop().await;
    let _v2 = FakeGrpc::library().and_authors().spawn_at(addr).await;
    let mut status = 0;
    for _ in 0..200 {
        status = get(&gw.url("/v1/shelves/1")).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the new service is served without a restart");
}

#[tokio::test]
async fn refresh_names_an_unknown_backend_and_leaves_file_backends_unchanged() {
    let gw = gateway_from(
        "grpc:\n  - name: library\n    url: http://127.0.0.1:9\n    descriptors: [descriptors/library.binpb]\n",
    )
    .await
    .expect("starts");
    assert_eq!(gw.gateway.refresh("library").await, Ok(false));
    let unknown = gw.gateway.refresh("nope").await;
    assert_eq!(unknown, Err("no backend named nope".to_string()));
}

// On two threads, so the refreshes really overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_of_two_backends_at_once_keep_both_changes() {
    let (a1, b1) = (
        FakeGrpc::nothing().spawn().await,
        FakeGrpc::nothing().spawn().await,
    );
    let (a_addr, b_addr) = (a1.addr, b1.addr);
    let gw = gateway_from(&format!(
        "grpc:\n  - name: a\n    url: {}\n    reflection_refresh: 0s\n  - name: b\n    url: {}\n    reflection_refresh: 0s\n",
        a1.url(),
        b1.url()
    ))
    .await
    .expect("starts");
    a1.stop().await;
    b1.stop().await;
    let _a2 = FakeGrpc::library().spawn_at(a_addr).await;
    let _b2 = FakeGrpc::authors_only().spawn_at(b_addr).await;

    let refresh = |name: &'static str| {
        let gateway = gw.gateway.clone();
        tokio::spawn(async move { gateway.refresh(name).await })
    };
    let (a, b) = tokio::join!(refresh("a"), refresh("b"));
    assert_eq!((a.expect("join"), b.expect("join")), (Ok(true), Ok(true)));
    assert_eq!(
        get(&gw.url("/v1/shelves/1")).await.status,
        200,
        "a's change"
    );
    assert_eq!(
        get(&gw.url("/v1/authors/1")).await.status,
        200,
        "b's change"
    );
}

#[tokio::test]
async fn a_redeploy_that_drops_a_configured_method_is_refused_and_the_old_table_stays() {
    let v1 = FakeGrpc::library().and_authors().spawn().await;
    let addr = v1.addr;
    let gw = gateway_from(&format!(
        "{}routes:\n  - grpc: authors.v1.Authors/GetAuthor\n    get: /v2/authors/{{id}}\n",
        reflected(&v1.url())
    ))
    .await
    .expect("starts");
    assert_eq!(get(&gw.url("/v2/authors/1")).await.status, 200);

    v1.stop().await;
    let _v2 = FakeGrpc::library().spawn_at(addr).await;
    let refused = gw.gateway.refresh("app").await.expect_err("refused");
    assert!(
        refused.contains("routes[0].grpc") && refused.contains("authors.v1.Authors/GetAuthor"),
        "{refused}"
    );
    let methods = &gw.gateway.snapshot().table.methods;
    assert!(
        methods.contains_key("authors.v1.Authors/GetAuthor"),
        "old table kept"
    );
    assert_eq!(get(&gw.url("/v1/shelves/1")).await.status, 200);
}
