//! The `omnigate` binary as a user runs it: `validate`, `routes`, `run` and `demo`, with good
//! and bad input, exit codes, what goes to stdout and stderr, and shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use omnigate::demo;

use crate::support::{curl_lines, free_port, get, manifest_dir, try_send, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_omnigate");

/// `omnigate args...` run to completion in the crate root, with only `env` added.
async fn omnigate(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(manifest_dir())
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run omnigate"))
        .await
        .expect("join")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `omnigate` running in the background; killed if the test ends without stopping it.
struct Server {
    child: Child,
}

impl Server {
    fn spawn(args: &[&str]) -> Server {
        let child = Command::new(BIN)
            .args(args)
            .current_dir(manifest_dir())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn omnigate");
        Server { child }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Poll `url` until the server answers (`true`), or it exits (`false`).
    async fn wait_until_answering(&mut self, url: &str) -> bool {
        for _ in 0..400 {
            if self.exited().is_some() {
                return false;
            }
            if try_send("GET", url, &[], "").await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("omnigate neither answered {url} nor exited within 20s");
    }

    /// Send SIGTERM (like `kill -TERM`, Ctrl-C's polite cousin) and wait for the exit.
    async fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        for _ in 0..400 {
            if let Some(status) = self.exited() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("omnigate did not exit within 20s of SIGTERM");
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
        }
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A config in a temp dir with the library described by the checked-in descriptor set.
fn library_config(dir: &TempDir, library_url: &str, rest: &str) -> std::path::PathBuf {
    let descriptors = manifest_dir().join("descriptors/library.binpb");
    dir.file(
        "gw.yaml",
        &format!(
            "listen: 127.0.0.1:0\ngrpc:\n  - name: library\n    url: {library_url}\n    descriptors: [{}]\n{rest}",
            descriptors.display()
        ),
    )
}

/// `METHOD PATH TARGET` lines of `omnigate routes`, whitespace collapsed.
fn route_lines(output: &Output) -> Vec<String> {
    stdout(output)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

fn library_method_count() -> usize {
    let pool = prost_reflect::DescriptorPool::decode(demo::LIBRARY_DESCRIPTOR_SET).expect("pool");
    pool.get_service_by_name(demo::LIBRARY_SERVICE)
        .expect("library service")
        .methods()
        .len()
}

#[tokio::test]
async fn validate_prints_one_ok_line_and_exits_0_for_a_good_config() {
    let dir = TempDir::new();
    let path = library_config(
        &dir,
        "http://127.0.0.1:9",
        "http:\n  - name: reviews\n    prefix: /reviews\n    url: http://127.0.0.1:9\n",
    );
    let out = omnigate(&["validate", "--config", &path.display().to_string()], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let expected_start = format!("{}: OK (1 gRPC upstreams, 1 HTTP routes, ", path.display());
    assert!(text.starts_with(&expected_start), "{text}");
    assert!(text.trim_end().ends_with("REST bindings)"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[tokio::test]
async fn validate_accepts_every_example_against_running_backends() {
    let backends = demo::start().await.expect("backends");
    let env = [
        ("LIBRARY_URL", backends.library_url()),
        ("AUTHORS_URL", backends.authors_url()),
        ("REVIEWS_URL", backends.http_url()),
        ("OMNIGATE_LISTEN", "127.0.0.1:0".to_string()),
    ];
    let mut examples: Vec<_> = std::fs::read_dir(manifest_dir().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    examples.sort();
    assert!(!examples.is_empty());
    for path in examples {
        let relative = path
            .strip_prefix(manifest_dir())
            .expect("inside the crate")
            .display()
            .to_string();
        let out = omnigate(&["validate", "--config", &relative], &env).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{relative}:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).starts_with(&format!("{relative}: OK (")),
            "{}",
            stdout(&out)
        );
    }
}

#[tokio::test]
async fn validate_lists_every_error_with_file_line_and_column_and_exits_1() {
    let dir = TempDir::new();
    let path = library_config(
        &dir,
        "http://127.0.0.1:9",
        "\
http:
  - name: reviews
    prefx: /reviews
    url: http://127.0.0.1:9
    timeout: soon
routes:
  - grpc: library.v1.Library/GetBok
",
    );
    let file = path.display().to_string();
    let out = omnigate(&["validate", "--config", &file], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "", "nothing on stdout when invalid");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let expected = [
        format!("{file}:8:5: http[0].prefx: unknown field `prefx` (did you mean `prefix`?)"),
        format!("{file}:10:5: http[0].timeout: invalid duration \"soon\""),
        format!("{file}:12:5: routes[0].grpc: method \"library.v1.Library/GetBok\" is not served"),
    ];
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, start) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(start.as_str()),
            "{line}\nshould start with\n{start}"
        );
    }
}

#[tokio::test]
async fn validate_of_a_missing_file_says_so_and_exits_1() {
    let out = omnigate(&["validate", "--config", "no/such/gw.yaml"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("no/such/gw.yaml: cannot read the file: "),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn routes_prints_one_line_per_binding_auto_mapping_and_http_prefix() {
    let dir = TempDir::new();
    let path = library_config(
        &dir,
        "http://127.0.0.1:9",
        "\
http:
  - name: reviews
    prefix: /reviews
    url: http://127.0.0.1:9
  - name: api
    prefix: /api
    url: http://127.0.0.1:9
    strip_prefix: true
routes:
  - grpc: library.v1.Library/GetBook
    get: /v2/books/{name=shelves/*/books/*}
",
    );
    let file = path.display().to_string();
    let out = omnigate(&["routes", "--config", &file], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = route_lines(&out);
    for expected in [
        "GET /v1/{name=shelves/*/books/*} grpc library.v1.Library/GetBook",
        "GET /v2/books/{name=shelves/*/books/*} grpc library.v1.Library/GetBook",
        "POST /library.v1.Library/GetBook grpc library.v1.Library/GetBook",
        "PATCH /v1/{book.name=shelves/*/books/*} grpc library.v1.Library/UpdateBook",
        "SEARCH /v1/books:search grpc library.v1.Library/SearchBooks",
        "* /reviews/** http reviews",
        "* /api/** http api (prefix stripped)",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "missing `{expected}` in:\n{}",
            lines.join("\n")
        );
    }
    let auto: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("POST /library.v1.Library/"))
        .collect();
    assert_eq!(
        auto.len(),
        library_method_count(),
        "one auto-mapping per method"
    );
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), lines.len(), "no line twice");

    // As many gRPC lines as `validate` counts REST bindings.
    let validate = omnigate(&["validate", "--config", &file], &[]).await;
    let grpc_lines = lines.iter().filter(|l| l.contains(" grpc ")).count();
    assert!(
        stdout(&validate).contains(&format!(", {grpc_lines} REST bindings)")),
        "{} vs {grpc_lines} lines",
        stdout(&validate)
    );
}

#[tokio::test]
async fn routes_in_quick_mode_give_the_same_table_by_reflection_and_by_descriptor_file() {
    let backends = demo::start().await.expect("backends");
    let by_reflection = omnigate(&["routes", "--grpc", &backends.library_url()], &[]).await;
    assert_eq!(
        by_reflection.status.code(),
        Some(0),
        "{}",
        stderr(&by_reflection)
    );
    let by_file = omnigate(
        &[
            "routes",
            "--grpc",
            "http://127.0.0.1:9",
            "--descriptors",
            "descriptors/library.binpb",
        ],
        &[],
    )
    .await;
    assert_eq!(by_file.status.code(), Some(0), "{}", stderr(&by_file));
    let lines = route_lines(&by_reflection);
    assert!(
        lines.contains(
            &"GET /v1/{name=shelves/*/books/*} grpc library.v1.Library/GetBook".to_string()
        ),
        "{}",
        lines.join("\n")
    );
    assert!(
        !lines.iter().any(|l| l.contains("authors.v1")),
        "only the library was named"
    );
    assert_eq!(lines, route_lines(&by_file));
}

#[tokio::test]
async fn bad_quick_mode_flags_exit_1_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--http", "nonsense"],
            "--http \"nonsense\": write PREFIX=URL",
        ),
        (
            &["run", "--http", "/x=localhost"],
            "http[0].url: \"localhost\" is not an absolute URL",
        ),
        (&["run"], "nothing to serve"),
        (
            &[
                "run",
                "--grpc",
                "http://127.0.0.1:9",
                "--grpc",
                "http://127.0.0.1:10",
                "--descriptors",
                "descriptors/library.binpb",
            ],
            "2 --grpc upstreams but 1 --descriptors files",
        ),
        (
            &["routes", "--descriptors", "descriptors/library.binpb"],
            "--descriptors describes a --grpc upstream",
        ),
        (
            &[
                "run",
                "--grpc",
                "http://127.0.0.1:9",
                "--descriptors",
                "descriptors/nope.binpb",
            ],
            "--descriptors descriptors/nope.binpb: no such file",
        ),
    ];
    for (args, message) in cases {
        let out = omnigate(args, &[]).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "{args:?}: stderr should say `{message}`:\n{}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn run_in_quick_mode_serves_rest_and_proxy_and_drains_then_exits_0_on_sigterm() {
    let backends = demo::start().await.expect("backends");
    let library = backends.library_url();
    let reviews = format!("/reviews={}", backends.http_url());
    for attempt in 1..=3 {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut server = Server::spawn(&[
            "run", "--grpc", &library, "--http", &reviews, "--listen", &addr,
        ]);
        let base = format!("http://{addr}");
        if !server
            .wait_until_answering(&format!("{base}/v1/shelves"))
            .await
        {
            let err = server.stderr();
            assert!(attempt < 3, "omnigate run exited: {err}");
            continue; // the port was taken in between; try another
        }
        let book = get(&format!("{base}/v1/shelves/1/books/1")).await;
        assert_eq!(book.status, 200, "{}", book.text());
        assert_eq!(book.json()["title"], "The Glass Orchard");
        let reviews = get(&format!("{base}/reviews")).await;
        assert_eq!(reviews.status, 200, "{}", reviews.text());

        // A call in flight when SIGTERM arrives still completes.
        backends
            .library_backend
            .set_delay(Duration::from_millis(800));
        let calls_before = backends.library_backend.calls("GetBook");
        let url = format!("{base}/v1/shelves/1/books/2");
        let in_flight = tokio::spawn(async move { get(&url).await });
        while backends.library_backend.calls("GetBook") == calls_before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let status = server.terminate().await;
        let reply = in_flight.await.expect("join");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(status.code(), Some(0), "graceful exit: {}", server.stderr());
        return;
    }
}

/// Read stdout lines until the banner's last line; keeps the pipe open for the caller.
fn read_banner(stdout: ChildStdout) -> (String, BufReader<ChildStdout>) {
    let mut reader = BufReader::new(stdout);
    let mut banner = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read stdout");
        banner.push_str(&line);
        if n == 0 || line.contains("Press Ctrl-C to stop.") {
            return (banner, reader);
        }
    }
}

#[tokio::test]
async fn demo_prints_a_banner_whose_every_curl_line_works() {
    let mut server = Server::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let stdout = server.child.stdout.take().expect("stdout");
    let (banner, _pipe) = tokio::task::spawn_blocking(move || read_banner(stdout))
        .await
        .expect("join");
    assert!(
        banner.contains("Press Ctrl-C to stop."),
        "no banner: {banner}{}",
        server.stderr()
    );
    let first = banner.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("omnigate demo is listening on http://127.0.0.1:")
            && !first.ends_with(":0"),
        "the banner shows the bound port: {first}"
    );
    let curls = curl_lines(&banner);
    assert!(curls.len() >= 5, "{banner}");
    for curl in &curls {
        let reply = curl.send("", "").await;
        assert!(
            curl.expects(reply.status),
            "`{}` answered {}: {}",
            curl.line,
            reply.status,
            reply.text()
        );
    }
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
}

#[tokio::test]
async fn logs_go_to_stderr_so_stdout_holds_only_what_the_command_prints() {
    let mut server = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(manifest_dir())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(|child| Server { child })
        .expect("spawn omnigate");
    let stdout = server.child.stdout.take().expect("stdout");
    let (banner, _pipe) = tokio::task::spawn_blocking(move || read_banner(stdout))
        .await
        .expect("join");
    assert!(
        banner.starts_with("omnigate demo is listening on http://"),
        "stdout should open with the banner:\n{banner}"
    );
    server.terminate().await;
}

#[tokio::test]
async fn run_on_a_port_another_gateway_holds_exits_1_saying_the_address_is_in_use() {
    let backends = demo::start().await.expect("backends");
    // The way a running gateway holds its port: one SO_REUSEPORT listener per core.
    let held =
        omnigate::server::bind_per_core("127.0.0.1:0".parse().expect("address")).expect("bind");
    let addr = held[0].local_addr().expect("address").to_string();
    let mut server = Server::spawn(&["run", "--grpc", &backends.library_url(), "--listen", &addr]);
    // Without the check it would start and serve a share of the connections: give it ample
    // time to exit, then say so instead of hanging.
    let mut status = None;
    for _ in 0..200 {
        status = server.exited();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = status else {
        server.terminate().await;
        panic!("omnigate started on {addr}, which another gateway holds");
    };
    let err = server.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("binding {addr}")) && err.contains("in use"),
        "stderr should name the address and say it is in use:\n{err}"
    );
}

#[tokio::test]
async fn listen_beside_config_overrides_the_file_and_sighup_does_not_stop_the_gateway() {
    let backends = demo::start().await.expect("backends");
    let dir = TempDir::new();
    // The file says `listen: 127.0.0.1:0` (any free port): only the flag's address answers.
    let config = library_config(&dir, &backends.library_url(), "");
    for attempt in 1..=3 {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut server = Server::spawn(&[
            "run",
            "--config",
            config.to_str().expect("utf-8 path"),
            "--listen",
            &addr,
        ]);
        let url = format!("http://{addr}/v1/shelves/1/books/1");
        if !server.wait_until_answering(&url).await {
            let err = server.stderr();
            assert!(attempt < 3, "omnigate run exited: {err}");
            continue;
        }
        let status = Command::new("kill")
            .args(["-HUP", &server.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(server.exited().is_none(), "SIGHUP ended the gateway");
        assert_eq!(get(&url).await.status, 200);
        assert_eq!(server.terminate().await.code(), Some(0));
        return;
    }
}

#[tokio::test]
async fn validate_checks_graphql_queries_and_mutations_against_the_descriptors() {
    let dir = TempDir::new();
    let path = library_config(
        &dir,
        "http://127.0.0.1:9",
        "graphql:\n  queries: [library.v1.Library/SerchBooks]\n  mutations: [library.v1.Library/GetBook]\n",
    );
    let file = path.display().to_string();
    let out = omnigate(&["validate", "--config", &file], &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("graphql.queries[0]: method \"library.v1.Library/SerchBooks\" is not served by any gRPC upstream (did you mean `library.v1.Library/SearchBooks`?)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "the served mutation is fine: {err}");
}
