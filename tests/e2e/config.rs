//! Configuration files end to end: every shipped example loads and does what its header
//! says, and every kind of mistake is reported at its file, line and key, with the fix, all
//! of them in one run.

use std::collections::HashMap;
use std::sync::Mutex;

use omnigate::config::{self, Checked};
use omnigate::demo;
use omnigate::gateway::Gateway;

use crate::support::{curl_lines, get, manifest_dir, serve};

/// Variables the test configs may read; anything else is unset.
fn lookup(name: &str) -> Option<String> {
    match name {
        "OMNIGATE_LISTEN" => Some("127.0.0.1:0".into()),
        "SET_TO_PORT" => Some("127.0.0.1:7".into()),
        "SET_BUT_EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// A config as `gw.yaml` in the crate root (so `descriptors/library.binpb` resolves), checked
/// and started like `omnigate validate` does: every error, rendered one per line.
async fn errors_of(yaml: &str) -> Vec<String> {
    let checked = config::check_str("gw.yaml", yaml, &manifest_dir(), lookup);
    match Gateway::start_checked(checked).await {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let Some(rest) = text.strip_prefix(parts[0]) else {
        return false;
    };
    let mut rest = rest;
    for (i, part) in parts.iter().enumerate().skip(1) {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// The errors of `yaml`, one pattern (see [`glob`]) per expected error, in order.
async fn check(yaml: &str, expected: &[&str]) {
    let got = errors_of(yaml).await;
    let matches = got.len() == expected.len() && got.iter().zip(expected).all(|(g, e)| glob(e, g));
    assert!(
        matches,
        "config:\n{yaml}\nexpected:\n  {}\ngot:\n  {}",
        expected.join("\n  "),
        got.join("\n  ")
    );
}

const LIBRARY_FILES: &str = "grpc:
  - name: library
    url: http://127.0.0.1:9
    descriptors: [descriptors/library.binpb]
";

#[test]
fn the_glob_helper_matches_what_it_should() {
    assert!(glob("a*c", "abbbc"));
    assert!(glob("a:1:2: x*", "a:1:2: x y z"));
    assert!(!glob("a:1:2: x*", "a:1:3: x y z"));
    assert!(glob("*(did you mean `b`?)", "m (did you mean `b`?)"));
    assert!(!glob("abc", "abcd"));
}

#[tokio::test]
async fn every_example_loads_and_every_curl_line_in_its_header_works() {
    let backends = demo::start().await.expect("backends");
    let vars: HashMap<&str, String> = HashMap::from([
        ("LIBRARY_URL", backends.library_url()),
        ("AUTHORS_URL", backends.authors_url()),
        ("REVIEWS_URL", backends.http_url()),
        ("OMNIGATE_LISTEN", "127.0.0.1:0".to_string()),
    ]);
    let dir = manifest_dir().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "examples/ lost its files: {files:?}");

    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("read example");
        let asked = Mutex::new(Vec::new());
        let checked = config::check_str(&name, &text, &dir, |var| {
            asked.lock().expect("lock").push(var.to_string());
            vars.get(var).cloned()
        });
        let (loaded, gateway) = Gateway::start_checked(checked)
            .await
            .unwrap_or_else(|e| panic!("{name} does not load:\n{e}"));
        assert_eq!(
            loaded.validated.settings.listen.port(),
            0,
            "{name}: listen should come from OMNIGATE_LISTEN"
        );
        for var in asked.into_inner().expect("lock") {
            assert!(
                vars.contains_key(var.as_str()),
                "{name} reads ${{{var}}}, which this test does not set"
            );
        }

        let gw = serve(gateway).await;
        let curls = curl_lines(&text);
        assert!(
            !curls.is_empty(),
            "{name}: end the header with the curl lines that exercise it"
        );
        for curl in curls {
            let reply = curl.send("http://127.0.0.1:8080", &gw.url("")).await;
            assert!(
                curl.expects(reply.status),
                "{name}: `{}` answered {}: {}",
                curl.line,
                reply.status,
                reply.text()
            );
        }
    }
}

#[tokio::test]
async fn a_variable_default_applies_when_the_variable_is_unset_or_empty() {
    let listen = |yaml: &str| {
        config::load_str("gw.yaml", yaml, &manifest_dir(), lookup)
            .unwrap_or_else(|e| panic!("{yaml}: {e}"))
            .validated
            .settings
            .listen
            .to_string()
    };
    assert_eq!(listen("listen: ${NOT_SET:-127.0.0.1:5}\n"), "127.0.0.1:5");
    assert_eq!(
        listen("listen: ${SET_BUT_EMPTY:-127.0.0.1:6}\n"),
        "127.0.0.1:6"
    );
    assert_eq!(
        listen("listen: ${SET_TO_PORT:-127.0.0.1:5}\n"),
        "127.0.0.1:7"
    );
    assert_eq!(listen("listen: \"${SET_TO_PORT}\"\n"), "127.0.0.1:7");
}

#[tokio::test]
async fn each_mistake_is_reported_at_its_file_line_and_key_with_the_fix() {
    // (what is wrong, the config, the errors expected: `*` matches anything)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "YAML syntax",
            "listen: 127.0.0.1:0\nhttp:\n  - prefix: /a\n   url: http://127.0.0.1:9\n".into(),
            vec!["gw.yaml:4:*: YAML syntax error: *"],
        ),
        (
            "unknown key, at its own line",
            "http:\n  - name: reviews\n    prefx: /reviews\n    url: http://127.0.0.1:9\n".into(),
            vec!["gw.yaml:3:5: http[0].prefx: unknown field `prefx` (did you mean `prefix`?)"],
        ),
        (
            "wrong types",
            "limits:\n  max_body_bytes: lots\nhttp:\n  - url: http://127.0.0.1:9\n    strip_prefix: maybe\n".into(),
            vec![
                "gw.yaml:2:19: limits.max_body_bytes: invalid type: string \"lots\", expected u64*",
                "gw.yaml:5:19: http[0].strip_prefix: invalid type: string \"maybe\", expected a boolean*",
            ],
        ),
        (
            "bad duration",
            format!("{LIBRARY_FILES}    timeout: soon\n"),
            vec!["gw.yaml:5:5: grpc[0].timeout: invalid duration \"soon\": * (write e.g. 500ms, 5s or 1m)"],
        ),
        (
            "a zero timeout",
            format!("{LIBRARY_FILES}    timeout: 0s\nhttp:\n  - url: http://127.0.0.1:9\n    timeout: 0ms\n"),
            vec![
                "gw.yaml:5:5: grpc[0].timeout: timeout \"0s\" is zero, so every call would time out at once (leave the key out for no timeout, or write e.g. 5s)",
                "gw.yaml:8:5: http[0].timeout: timeout \"0ms\" is zero*",
            ],
        ),
        (
            "a reflection refresh that would spin",
            "grpc:\n  - name: library\n    url: http://127.0.0.1:9\n    reflection_refresh: 1ms\n".into(),
            vec!["gw.yaml:4:5: grpc[0].reflection_refresh: refreshing every \"1ms\" would keep the gateway busy asking the backend (use 100ms or more (e.g. 30s), or 0s to turn the refresh off)"],
        ),
        (
            "a header read timeout that is no duration",
            "limits:\n  header_read_timeout: forever\n".into(),
            vec!["gw.yaml:2:3: limits.header_read_timeout: invalid duration \"forever\": * (write e.g. 500ms, 5s or 1m)"],
        ),
        (
            "a zero header read timeout",
            "limits:\n  header_read_timeout: 0s\n".into(),
            vec!["gw.yaml:2:3: limits.header_read_timeout: must be greater than 0"],
        ),
        (
            "bad URLs",
            "http:\n  - prefix: /a\n    url: 127.0.0.1:5000\n  - prefix: /b\n    url: http://exa mple\n".into(),
            vec![
                "gw.yaml:3:5: http[0].url: \"127.0.0.1:5000\" is not an absolute URL (write e.g. http://*)",
                "gw.yaml:5:5: http[1].url: invalid URL \"http://exa mple\": * (write e.g. http://*)",
            ],
        ),
        (
            "unset variable",
            "listen: 127.0.0.1:0\nhttp:\n  - prefix: /a\n    url: ${REVIEWS_URLL}\n".into(),
            vec!["gw.yaml:4:10: environment variable `REVIEWS_URLL` is not set (set it, or give a default with `${NAME:-default}`)"],
        ),
        (
            "duplicate upstream names",
            format!("{LIBRARY_FILES}  - name: library\n    url: http://127.0.0.1:10\n"),
            vec!["gw.yaml:5:5: grpc[1].name: grpc[0] is already named \"library\" (give every upstream its own name)"],
        ),
        (
            "duplicate HTTP prefixes",
            "http:\n  - prefix: /b\n    url: http://127.0.0.1:9\n  - prefix: /a\n    url: http://127.0.0.1:9\n  - prefix: /b/\n    url: http://127.0.0.1:10\n".into(),
            vec!["gw.yaml:6:5: http[2].prefix: prefix \"/b\" is already routed by http[0] (give each route its own prefix*)"],
        ),
        (
            "a method that does not exist",
            format!("{LIBRARY_FILES}routes:\n  - grpc: library.v1.Library/GetBok\n    timeout: 1s\n"),
            vec!["gw.yaml:6:5: routes[0].grpc: method \"library.v1.Library/GetBok\" is not served by any gRPC upstream (did you mean `library.v1.Library/GetBook`?)"],
        ),
        (
            "a method that is nothing like any",
            format!("{LIBRARY_FILES}routes:\n  - grpc: shop.v1.Cart/Checkout\n"),
            vec!["gw.yaml:6:5: routes[0].grpc: method \"shop.v1.Cart/Checkout\" is not served by any gRPC upstream (known methods: library.v1.Library/*)"],
        ),
        (
            "a template naming a field the request lacks",
            format!("{LIBRARY_FILES}routes:\n  - grpc: library.v1.Library/GetBook\n    get: /v2/books/{{book_id}}\n"),
            vec!["gw.yaml:7:5: routes[0].get: *path variable {book_id}*no field `book_id` in message `library.v1.GetBookRequest`*name*"],
        ),
        (
            "a body naming a field the request lacks",
            format!("{LIBRARY_FILES}routes:\n  - grpc: library.v1.Library/CreateShelf\n    post: /v2/shelves\n    body: shelff\n"),
            vec!["gw.yaml:8:5: routes[0].body: *body \"shelff\"*"],
        ),
        (
            "two bindings with the same method and template",
            format!("{LIBRARY_FILES}routes:\n  - grpc: library.v1.Library/GetBook\n    get: /v2/{{name=shelves/*/books/*}}\n  - grpc: library.v1.Library/DeleteBook\n    delete: /v2/x\n  - grpc: library.v1.Library/GetBook\n    get: /v2/{{name=shelves/*/books/*}}\n"),
            vec!["gw.yaml:*: routes[*].get: GET \"/v2/{name=shelves/*/books/*}\" of routes[*] (library.v1.Library/GetBook) matches the same paths as GET \"/v2/{name=shelves/*/books/*}\" of routes[*] (library.v1.Library/GetBook) (change one of the two templates, or remove one)"],
        ),
        (
            "two methods on one path",
            format!("{LIBRARY_FILES}routes:\n  - grpc: library.v1.Library/GetShelf\n    get: /v1/{{name=shelves/*/books/*}}\n"),
            vec!["gw.yaml:7:5: routes[0].get: GET \"/v1/{name=shelves/*/books/*}\" of routes[0] (library.v1.Library/GetShelf) matches the same paths as GET \"/v1/{name=shelves/*/books/*}\" of library.v1.Library/GetBook (google.api.http)*"],
        ),
        (
            "a missing descriptor file",
            "grpc:\n  - name: library\n    url: http://127.0.0.1:9\n    descriptors: [descriptors/library.binpb, descriptors/missing.binpb]\n".into(),
            vec!["gw.yaml:4:46: grpc[0].descriptors[1]: descriptor set */descriptors/missing.binpb does not exist (paths are relative to the config file*)"],
        ),
        (
            "a file that is not a descriptor set",
            "grpc:\n  - name: library\n    url: http://127.0.0.1:9\n    descriptors: [Cargo.toml]\n".into(),
            vec!["gw.yaml:4:19: grpc[0].descriptors[0]: */Cargo.toml is not a FileDescriptorSet: *"],
        ),
    ];
    for (what, yaml, expected) in &cases {
        eprintln!("case: {what}");
        check(yaml, expected).await;
    }
}

#[tokio::test]
async fn every_error_is_reported_in_one_run_in_file_order() {
    let yaml = format!(
        "\
limits:
  max_body_bytes: lots
{LIBRARY_FILES}http:
  - name: reviews
    prefx: /reviews
    url: http://127.0.0.1:9
    timeout: soon
  - prefix: /a
    url: localhost
  - prefix: /a/
    url: http://127.0.0.1:9
routes:
  - grpc: library.v1.Library/GetBok
  - grpc: library.v1.Library/GetBook
    get: /v2/books/{{book_id}}
shutdown_grace: later
"
    );
    check(
        &yaml,
        &[
            "gw.yaml:2:19: limits.max_body_bytes: invalid type: *",
            "gw.yaml:9:5: http[0].prefx: unknown field `prefx` (did you mean `prefix`?)",
            "gw.yaml:11:5: http[0].timeout: invalid duration \"soon\"*",
            "gw.yaml:13:5: http[1].url: \"localhost\" is not an absolute URL*",
            "gw.yaml:14:5: http[2].prefix: prefix \"/a\" is already routed by http[1]*",
            "gw.yaml:17:5: routes[0].grpc: method \"library.v1.Library/GetBok\" *(did you mean `library.v1.Library/GetBook`?)",
            "gw.yaml:19:5: routes[1].get: *no field `book_id`*",
            "gw.yaml:20:1: shutdown_grace: invalid duration \"later\"*",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_config_with_errors_does_not_start() {
    let checked: Checked = config::check_str(
        "gw.yaml",
        &format!("{LIBRARY_FILES}routes:\n  - grpc: library.v1.Library/GetBok\n"),
        &manifest_dir(),
        lookup,
    );
    assert!(
        checked.errors.is_empty(),
        "valid until checked against the descriptors"
    );
    assert!(Gateway::start_checked(checked).await.is_err());
}

#[tokio::test]
async fn a_gateway_built_from_yaml_serves_its_extra_bindings() {
    let backends = demo::start().await.expect("backends");
    let yaml = format!(
        "grpc:\n  - name: library\n    url: {}\n    descriptors: [descriptors/library.binpb]\nroutes:\n  - grpc: library.v1.Library/GetBook\n    get: /v2/books/{{name=shelves/*/books/*}}\n  - grpc: library.v1.Library/GetBook\n    get: /v3/{{name=shelves/**}}/details\n",
        backends.library_url()
    );
    let checked = config::check_str("gw.yaml", &yaml, &manifest_dir(), lookup);
    let (_, gateway) = Gateway::start_checked(checked).await.expect("starts");
    let gw = serve(gateway).await;
    let r = get(&gw.url("/v2/books/shelves/1/books/2")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["title"], "Stars Beneath the Ice");
    // Segments after `**` (accepted by Envoy and grpc-gateway): `**` takes all but the tail.
    let r = get(&gw.url("/v3/shelves/1/books/2/details")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["title"], "Stars Beneath the Ice");
    let r = get(&gw.url("/v3/shelves/1/books/2")).await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[tokio::test]
async fn an_empty_descriptor_file_is_an_error_not_a_backend_without_methods() {
    let dir = crate::support::TempDir::new();
    let empty = dir.file("empty.binpb", "");
    let yaml = format!(
        "grpc:\n  - name: library\n    url: http://127.0.0.1:9\n    descriptors: [{}]\n",
        empty.display()
    );
    let pattern = format!(
        "gw.yaml:4:19: grpc[0].descriptors[0]: {} holds no proto files (an empty FileDescriptorSet)*",
        empty.display()
    );
    check(&yaml, &[&pattern]).await;
}
