//! OpenTelemetry across the queue, end to end: `worker` processes (the API, the worker, `spawn`)
//! export over OTLP/HTTP to a receiver this test starts, configured only by the standard
//! `OTEL_*` variables; one test publishes with Google's own Python client, OpenTelemetry on.

mod common;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use common::*;

/// One span as the receiver got it: ids in hex, attributes as text.
#[derive(Clone, Debug)]
struct Span {
    service: String,
    name: String,
    kind: i32,
    trace: String,
    id: String,
    parent: String,
    links: Vec<(String, String)>,
    attributes: HashMap<String, String>,
    error: bool,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
    fn job(&self) -> Option<&str> {
        self.attr("pubsub_jobs.job.id")
    }
    fn attempt(&self) -> Option<u32> {
        self.attr("pubsub_jobs.job.attempt")
            .and_then(|a| a.parse().ok())
    }
}

// SpanKind numbers of OTLP.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

/// An OTLP/HTTP (protobuf) receiver on loopback: what every exporter sent so far.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
    /// (service, metric name)
    metrics: Arc<Mutex<HashSet<(String, String)>>>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn service_of(resource: &Option<opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "service.name")
        .map(|kv| text(&kv.value))
        .unwrap_or_default()
}

impl Receiver {
    /// Starts it; returns it and its base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    async fn start() -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let receiver = Receiver::default();
        let r = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let r = r.clone();
                        async move { Ok::<_, Infallible>(r.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (receiver, base)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        match path.as_str() {
            "/v1/traces" => {
                let export = ExportTraceServiceRequest::decode(body).expect("OTLP traces");
                let mut spans = self.spans.lock().unwrap();
                for rs in export.resource_spans {
                    let service = service_of(&rs.resource);
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            spans.push(Span {
                                service: service.clone(),
                                name: s.name,
                                kind: s.kind,
                                trace: hex(&s.trace_id),
                                id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                                links: s
                                    .links
                                    .iter()
                                    .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                                    .collect(),
                                attributes: s
                                    .attributes
                                    .iter()
                                    .map(|kv| (kv.key.clone(), text(&kv.value)))
                                    .collect(),
                                error: s.status.is_some_and(|st| st.code == 2),
                            });
                        }
                    }
                }
            }
            "/v1/metrics" => {
                let export = ExportMetricsServiceRequest::decode(body).expect("OTLP metrics");
                let mut metrics = self.metrics.lock().unwrap();
                for rm in export.resource_metrics {
                    let service = service_of(&rm.resource);
                    for sm in rm.scope_metrics {
                        for m in sm.metrics {
                            metrics.insert((service.clone(), m.name));
                        }
                    }
                }
            }
            _ => {}
        }
        Response::builder()
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::new()))
            .expect("response")
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until `cond` holds of the spans received, or panics after `timeout` naming `what`.
    async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if cond(&spans) {
                return spans;
            }
            if std::time::Instant::now() > deadline {
                let names: Vec<String> = spans
                    .iter()
                    .map(|s| format!("{} {}", s.service, s.name))
                    .collect();
                panic!(
                    "timed out waiting for {what}; {} spans: {names:?}",
                    spans.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn has_metric(&self, service: &str, name: &str) -> bool {
        self.metrics
            .lock()
            .unwrap()
            .contains(&(service.to_string(), name.to_string()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The `OTEL_*` settings of a process named `service` exporting to `endpoint`, fast.
fn otel_env(endpoint: &str, service: &str) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
        ("OTEL_SERVICE_NAME".into(), service.into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL".into(), "300".into()),
    ]
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A worker process of `queue` (JSON logs discarded), stopped with SIGTERM when dropped.
struct Worker(std::process::Child);

impl Worker {
    fn start(queue: &str, env: &[(&str, &str)], extra: &[&str]) -> Self {
        let mut cmd = worker();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .args(["--queue", queue, "--log-format", "json"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start worker");
        Self(child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_through_the_api_with_a_traceparent_is_one_trace_from_request_to_run() {
    let (receiver, endpoint) = Receiver::start().await;
    let q = unique("otel-api");
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let api_env = otel_env(&endpoint, "api");
    let api = Api::start(emulator_host(), &store, &refs(&api_env)).await;
    let worker_env = otel_env(&endpoint, "worker");
    let _w = Worker::start(&q, &refs(&worker_env), &["--store", &store]);

    let (trace, caller) = (random_hex(16), random_hex(8));
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/jobs", api.base))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&serde_json::json!({
            "job_class": "MockJob",
            "arguments": {"sleep_duration": 0, "raise_error": false},
            "queue": q,
        }))
        .send()
        .await
        .expect("POST /v1/jobs");
    assert_eq!(resp.status(), 202);
    let job: serde_json::Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();

    let spans = receiver
        .wait("the job's process span", Duration::from_secs(60), |spans| {
            spans
                .iter()
                .any(|s| s.kind == CONSUMER && s.job() == Some(&id))
        })
        .await;
    let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace == trace).collect();
    let one = |pred: &dyn Fn(&Span) -> bool, what: &str| -> Span {
        let found: Vec<&&Span> = in_trace.iter().filter(|s| pred(s)).collect();
        assert_eq!(
            found.len(),
            1,
            "one {what} in the caller's trace: {in_trace:#?}"
        );
        (*found[0]).clone()
    };
    let request = one(
        &|s| s.kind == SERVER && s.name == "POST /v1/jobs",
        "request span",
    );
    assert_eq!(request.service, "api");
    assert_eq!(
        request.parent, caller,
        "the request continues the caller's span"
    );
    let create = one(&|s| s.kind == PRODUCER, "create span");
    assert_eq!(create.name, format!("create {q}"));
    assert_eq!(create.parent, request.id);
    assert_eq!(create.job(), Some(id.as_str()));
    let send = one(&|s| s.kind == CLIENT, "send span");
    assert_eq!(send.name, format!("send {q}"));
    // The store's batch publishes after the answer, outside the request: a child of the one
    // job's creation (several jobs in one request: linked to each).
    assert!(
        send.parent == create.id || send.links.contains(&(trace.clone(), create.id.clone())),
        "the publish follows the enqueue: {send:#?}"
    );
    let process = one(&|s| s.kind == CONSUMER, "process span");
    assert_eq!(process.service, "worker");
    assert_eq!(process.name, format!("process {q}"));
    assert_eq!(
        process.parent, create.id,
        "the first execution is a child of the enqueue"
    );
    assert_eq!(process.attr("messaging.system"), Some("gcp_pubsub"));
    assert_eq!(process.attr("messaging.destination.name"), Some(q.as_str()));
    assert_eq!(process.attr("pubsub_jobs.job.class"), Some("MockJob"));
    assert_eq!(process.attempt(), Some(1));
    assert!(process
        .attr("messaging.message.id")
        .is_some_and(|m| !m.is_empty()));
    assert!(!process.error);

    // The messaging metrics, from each side.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(receiver.has_metric("worker", "messaging.process.duration")
        && receiver.has_metric("worker", "messaging.client.consumed.messages")
        && receiver.has_metric("api", "messaging.client.sent.messages"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "messaging metrics not exported: {:?}",
            receiver.metrics.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retry_of_100_failing_jobs_is_a_trace_of_its_own_linked_to_the_run_before() {
    let (receiver, endpoint) = Receiver::start().await;
    let q = unique("otel-retry");
    let worker_env = otel_env(&endpoint, "worker");
    let mut env = refs(&worker_env);
    env.push(("MOCK_JOB_RETRY_WAIT", "1"));
    let _w = Worker::start(&q, &env, &["--concurrency", "50"]);
    let spawn_env = otel_env(&endpoint, "spawn");
    let (code, _, err) = run(
        &[
            "spawn",
            "--queue",
            &q,
            "--count",
            "100",
            "--rate",
            "1000",
            "--fail-ratio",
            "1",
            "--max-sleep",
            "0",
        ],
        &refs(&spawn_env),
    );
    assert_eq!(code, 0, "spawn: {err}");

    // MockJob runs 3 times in all, then goes to the morgue.
    let spans = receiver
        .wait("300 process spans", Duration::from_secs(120), |spans| {
            spans.iter().filter(|s| s.kind == CONSUMER).count() >= 300
        })
        .await;
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut runs: HashMap<&str, Vec<&Span>> = HashMap::new();
    for s in spans.iter().filter(|s| s.kind == CONSUMER) {
        runs.entry(s.job().expect("a process span names its job"))
            .or_default()
            .push(s);
    }
    assert_eq!(runs.len(), 100, "100 jobs ran");
    let mut traces = HashSet::new();
    for (job, runs) in &mut runs {
        runs.sort_by_key(|s| s.attempt());
        let attempts: Vec<Option<u32>> = runs.iter().map(|s| s.attempt()).collect();
        assert_eq!(attempts, [Some(1), Some(2), Some(3)], "job {job}");
        assert!(
            runs.iter().all(|s| s.error),
            "every execution failed: {runs:#?}"
        );
        // The first: a child of spawn's enqueue of this job.
        let create = by_id.get(runs[0].parent.as_str()).unwrap_or_else(|| {
            panic!(
                "job {job}: the first run's parent was not exported: {:#?}",
                runs[0]
            )
        });
        assert_eq!(
            (create.service.as_str(), create.kind, create.job()),
            ("spawn", PRODUCER, Some(*job))
        );
        assert!(runs[0].links.is_empty());
        for pair in runs.windows(2) {
            let (before, retry) = (pair[0], pair[1]);
            assert_ne!(
                retry.trace, before.trace,
                "job {job}: a retry starts a trace of its own"
            );
            assert!(
                retry.parent.is_empty() || retry.parent == "0000000000000000",
                "job {job}: a retry is a root: {retry:#?}"
            );
            assert_eq!(retry.links.len(), 1, "job {job}: one link back: {retry:#?}");
            let (link_trace, link_span) = &retry.links[0];
            assert_eq!(
                link_trace, &before.trace,
                "job {job}: the link points into the run before"
            );
            let linked = by_id
                .get(link_span.as_str())
                .expect("the linked span was exported");
            assert_eq!(linked.kind, PRODUCER, "the retry's enqueue");
            assert_eq!(
                linked.parent, before.id,
                "job {job}: the retry was enqueued by the failed run"
            );
        }
        for r in runs.iter() {
            assert!(
                traces.insert(r.trace.clone()),
                "trace {} holds two executions",
                r.trace
            );
        }
    }
    // No job's span leaks into another's trace.
    let mut jobs_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    for s in &spans {
        if let Some(job) = s.job() {
            jobs_of.entry(&s.trace).or_default().insert(job);
        }
    }
    for (trace, jobs) in jobs_of {
        assert_eq!(
            jobs.len(),
            1,
            "trace {trace} holds spans of several jobs: {jobs:?}"
        );
    }
}

/// Whether Google's Python Pub/Sub client and the OpenTelemetry SDK are there for `test` (see
/// `tools::have`).
fn google_python(test: &str) -> bool {
    let present = tools::runs(
        "python3",
        &[
            "-c",
            "import google.cloud.pubsub_v1, opentelemetry.sdk.trace",
        ],
    );
    tools::have(
        test,
        "python3 with google-cloud-pubsub and opentelemetry-sdk",
        "pip install google-cloud-pubsub opentelemetry-sdk",
        present,
    )
}

/// Runs `script` with the test project and `queue` as its arguments, on the emulator; the JSON
/// line it prints.
fn python(script: &str, queue: &str) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .args(["-c", script, "cli-tests", queue])
        .env("PUBSUB_EMULATOR_HOST", emulator_host())
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the Python script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.trim_ascii()).expect("the script's JSON line")
}

const PYTHON_PUBLISHER: &str = r#"
import datetime, json, os, sys, uuid
from google.cloud import pubsub_v1
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

project, queue = sys.argv[1], sys.argv[2]
publisher = pubsub_v1.PublisherClient(
    publisher_options=pubsub_v1.types.PublisherOptions(enable_open_telemetry_tracing=True)
)
job_id = str(uuid.uuid4())
body = {
    "format_version": 1,
    "job_class": "MockJob",
    "job_id": job_id,
    "queue_name": queue,
    "arguments": {"sleep_duration": 0, "raise_error": False},
    "executions": 0,
    "enqueued_at": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
}
publisher.publish(publisher.topic_path(project, queue), json.dumps(body).encode()).result(timeout=60)
provider.force_flush()
create = [s for s in exporter.get_finished_spans() if s.name.endswith(" create")]
assert create, [s.name for s in exporter.get_finished_spans()]
ctx = create[0].context
print(json.dumps({"job_id": job_id, "trace": format(ctx.trace_id, "032x"), "span": format(ctx.span_id, "016x")}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_python_publishes_with_opentelemetry_on_continues_its_trace_in_the_worker() {
    if !google_python(
        "a_message_python_publishes_with_opentelemetry_on_continues_its_trace_in_the_worker",
    ) {
        return;
    }
    let (receiver, endpoint) = Receiver::start().await;
    let q = unique("otel-python");
    let worker_env = otel_env(&endpoint, "worker");
    let _w = Worker::start(&q, &refs(&worker_env), &[]);
    // The worker makes the queue; Python publishes to its topic.
    let (code, _, err) = run(&["queues", "setup", &q], &[]);
    assert_eq!(code, 0, "queues setup: {err}");

    let published = python(PYTHON_PUBLISHER, &q);
    let job_id = published["job_id"].as_str().unwrap().to_string();

    let spans = receiver
        .wait("the job's process span", Duration::from_secs(60), |spans| {
            spans
                .iter()
                .any(|s| s.kind == CONSUMER && s.job() == Some(&job_id))
        })
        .await;
    let process = spans
        .iter()
        .find(|s| s.kind == CONSUMER && s.job() == Some(&job_id))
        .unwrap();
    assert_eq!(
        process.trace,
        published["trace"].as_str().unwrap(),
        "Python's trace goes on in the worker"
    );
    assert_eq!(
        process.parent,
        published["span"].as_str().unwrap(),
        "a child of Python's create span"
    );
    assert!(!process.error, "{process:#?}");
}

const PYTHON_SUBSCRIBER: &str = r#"
import json, sys, threading
from google.cloud import pubsub_v1
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

project, subscription = sys.argv[1], sys.argv[2]
subscriber = pubsub_v1.SubscriberClient(
    subscriber_options=pubsub_v1.types.SubscriberOptions(enable_open_telemetry_tracing=True)
)
done = threading.Event()
received = {}
def callback(message):
    received["traceparent"] = message.attributes.get("googclient_traceparent")
    message.ack()
    done.set()
future = subscriber.subscribe(subscriber.subscription_path(project, subscription), callback=callback)
assert done.wait(60), "no message"
future.cancel()
try:
    future.result(timeout=10)
except Exception:
    pass
subscriber.close()
provider.force_flush()
spans = [s for s in exporter.get_finished_spans() if s.name.endswith(" subscribe")]
assert spans, [s.name for s in exporter.get_finished_spans()]
s = spans[0]
print(json.dumps({
    "attribute": received["traceparent"],
    "trace": format(s.context.trace_id, "032x"),
    "parent": format(s.parent.span_id, "016x") if s.parent else None,
    "links": [[format(l.context.trace_id, "032x"), format(l.context.span_id, "016x")] for l in s.links],
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_we_enqueue_continues_its_trace_in_a_python_subscriber_with_opentelemetry_on() {
    if !google_python(
        "a_job_we_enqueue_continues_its_trace_in_a_python_subscriber_with_opentelemetry_on",
    ) {
        return;
    }
    let (receiver, endpoint) = Receiver::start().await;
    let q = unique("otel-to-python");
    let env = otel_env(&endpoint, "enqueue");
    let (code, id, err) = run(
        &[
            "enqueue",
            "MockJob",
            r#"{"sleep_duration":0,"raise_error":false}"#,
            "--queue",
            &q,
        ],
        &refs(&env),
    );
    assert_eq!(code, 0, "enqueue: {err}");
    let id = id.trim().to_string();
    let spans = receiver
        .wait(
            "the enqueue's create span",
            Duration::from_secs(30),
            |spans| {
                spans
                    .iter()
                    .any(|s| s.kind == PRODUCER && s.job() == Some(&id))
            },
        )
        .await;
    let create = spans
        .iter()
        .find(|s| s.kind == PRODUCER && s.job() == Some(&id))
        .unwrap();

    let got = python(PYTHON_SUBSCRIBER, &q);
    assert_eq!(
        got["attribute"],
        format!("00-{}-{}-01", create.trace, create.id),
        "the message carries our creation context where Google's clients read it"
    );
    assert_eq!(
        got["trace"],
        create.trace.as_str(),
        "Python's subscribe span is in our trace"
    );
    let linked = got["links"]
        .as_array()
        .is_some_and(|l| l.iter().any(|l| l[1] == create.id.as_str()));
    assert!(
        got["parent"] == create.id.as_str() || linked,
        "Python's subscribe span follows our create span: {got}"
    );
}
