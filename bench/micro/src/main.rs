//! Times each transcoding step of the benchmark's REST → gRPC rows, in-process, on the same
//! messages: the GET row's reply (book 1 as the backend encodes it) and the POST row's ~1 KB
//! book body. Compares omnigate's functions with prost-reflect's plain serde path, to size
//! what path tracking and the input guard cost, and the reply's decode + encode with
//! rendering straight from the wire bytes (`transcode::wire`).

use std::hint::black_box;
use std::time::Instant;

use omnigate::transcode::json::{self, JsonOptions};
use omnigate::transcode::wire;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};

fn time(label: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{label:<58} {:>8.2} µs", ns / 1000.0);
}

fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let bytes = std::fs::read(format!("{root}/descriptors/library.binpb")).expect("descriptors");
    let pool = DescriptorPool::decode(bytes.as_slice()).expect("pool");
    let book_desc = pool.get_message_by_name("library.v1.Book").expect("Book");
    let create = pool
        .get_message_by_name("library.v1.CreateBookRequest")
        .expect("CreateBookRequest");
    let book_field = create.get_field_by_name("book").expect("book field");
    let body = std::fs::read(format!("{root}/bench/book.json")).expect("bench/book.json");
    let body = body.trim_ascii_end().to_vec();
    let opts = JsonOptions::default();
    let ser = SerializeOptions::new()
        .stringify_64_bit_integers(true)
        .skip_default_fields(true);
    let de = DeserializeOptions::new().deny_unknown_fields(true);
    let n = 50_000;

    // The GET row's reply: seed book 1 as the demo backend (prost-generated code) encodes
    // it, with its `format` oneof (field 20) after field 24, then in field-number order.
    let get_json = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/get-book.json"))
        .expect("bench/micro/get-book.json");
    let get_msg = json::decode_message(&book_desc, get_json.trim_ascii_end(), &opts).expect("ok");
    let sorted = get_msg.encode_to_vec();
    let mut rest = get_msg.clone();
    rest.clear_field_by_number(20);
    let mut only_format = DynamicMessage::new(book_desc.clone());
    only_format.set_field_by_number(
        20,
        get_msg.get_field_by_number(20).expect("20").into_owned(),
    );
    let mut prost_order = rest.encode_to_vec();
    prost_order.extend_from_slice(&only_format.encode_to_vec());
    let plan = wire::ReplyPlan::compile(&book_desc);
    let mut check = Vec::new();
    wire::render_reply(&plan, &prost_order, &opts, &mut check).expect("ok");
    let value = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).expect("JSON");
    assert_eq!(
        value(&check),
        value(&get_json),
        "the GET book renders as the demo's"
    );
    println!(
        "  (GET reply: {} bytes protobuf, {} bytes JSON)",
        prost_order.len(),
        check.len()
    );
    if let Ok(spin) = std::env::var("MICRO_SPIN") {
        // For `perf stat`: only one render, this many times. MICRO_INPUT picks the reply:
        // `get` (default, prost's order), `get-sorted`, or `bench` (bench/book.json).
        let spin: u32 = spin.parse().expect("MICRO_SPIN: a count");
        let bench_reply;
        let input: &[u8] = match std::env::var("MICRO_INPUT").as_deref() {
            Ok("get-sorted") => &sorted,
            Ok("bench") => {
                let msg = json::decode_message(&book_desc, &body, &opts).expect("ok");
                bench_reply = msg.encode_to_vec();
                &bench_reply
            }
            _ => &prost_order,
        };
        for _ in 0..spin {
            // As `rest::render_reply` sizes it.
            let mut out = Vec::with_capacity(2 * input.len() + 16);
            wire::render_reply(&plan, black_box(input), &opts, &mut out).expect("ok");
            black_box(out);
        }
        return;
    }

    // POST: JSON body → request message → protobuf bytes.
    time("POST decode_field_value (guard + path tracking)", n, || {
        black_box(json::decode_field_value(&book_field, black_box(&body), &opts).expect("ok"));
    });
    time("POST plain prost-reflect deserialize (no guard)", n, || {
        let mut d = serde_json::Deserializer::from_slice(black_box(&body));
        black_box(
            DynamicMessage::deserialize_with_options(book_desc.clone(), &mut d, &de).expect("ok"),
        );
    });
    let mut request = DynamicMessage::new(create.clone());
    let book = json::decode_field_value(&book_field, &body, &opts)
        .expect("ok")
        .expect("value");
    request.set_field(&book_field, book);
    request.set_field_by_name("parent", prost_reflect::Value::String("shelves/1".into()));
    time("POST encode_to_vec (request message)", n, || {
        black_box(black_box(&request).encode_to_vec());
    });
    time("POST encoded_len only", n, || {
        black_box(black_box(&request).encoded_len());
    });
    let wire = request.encode_to_vec();
    println!(
        "  (request message: {} bytes protobuf, {} bytes JSON)",
        wire.len(),
        body.len()
    );

    // GET/POST reply: protobuf bytes → message → JSON.
    let reply_msg = json::decode_message(&book_desc, &body, &opts).expect("ok");
    let reply = bytes::Bytes::from(reply_msg.encode_to_vec());
    time("reply DynamicMessage::decode", n, || {
        black_box(DynamicMessage::decode(book_desc.clone(), black_box(reply.clone())).expect("ok"));
    });
    time("reply json::encode_message (path tracking)", n, || {
        black_box(json::encode_message(black_box(&reply_msg), &opts).expect("ok"));
    });
    time(
        "reply plain serde_json::to_vec (no path tracking)",
        n,
        || {
            let mut out = Vec::with_capacity(1024);
            let mut s = serde_json::Serializer::new(&mut out);
            black_box(&reply_msg)
                .serialize_with_options(&mut s, &ser)
                .expect("ok");
            black_box(out);
        },
    );

    // The reply path before and after rendering straight from the wire bytes.
    println!("  (reply message: {} bytes protobuf)", reply.len());
    time("reply before: decode + json::encode_message", n, || {
        let msg = DynamicMessage::decode(book_desc.clone(), black_box(reply.clone())).expect("ok");
        black_box(json::encode_message(&msg, &opts).expect("ok"));
    });
    time("reply after: wire::render_reply", n, || {
        let mut out = Vec::with_capacity(2 * reply.len() + 16);
        wire::render_reply(&plan, black_box(&reply), &opts, &mut out).expect("ok");
        black_box(out);
    });
    let all = JsonOptions {
        emit_unpopulated: true,
        use_proto_names: true,
        ..JsonOptions::default()
    };
    time("reply before, emit_unpopulated + proto names", n, || {
        let msg = DynamicMessage::decode(book_desc.clone(), black_box(reply.clone())).expect("ok");
        black_box(json::encode_message(&msg, &all).expect("ok"));
    });
    time("reply after, emit_unpopulated + proto names", n, || {
        let mut out = Vec::with_capacity(2 * reply.len() + 16);
        wire::render_reply(&plan, black_box(&reply), &all, &mut out).expect("ok");
        black_box(out);
    });

    for (label, bytes) in [
        ("GET reply wire::render_reply (prost order)", &prost_order),
        ("GET reply wire::render_reply (number order)", &sorted),
    ] {
        time(label, n, || {
            let mut out = Vec::with_capacity(2 * bytes.len() + 16);
            wire::render_reply(&plan, black_box(bytes), &opts, &mut out).expect("ok");
            black_box(out);
        });
    }
    time("ReplyPlan::compile(library.v1.Book)", n / 10, || {
        black_box(wire::ReplyPlan::compile(black_box(&book_desc)));
    });
}
