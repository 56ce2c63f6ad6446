//! A loopback HTTP proxy in front of moto that does what moto cannot:
//!
//! - counts every AWS request by operation, and records how many names each
//!   DescribeServices carried (AWS allows at most ten; moto accepts any number);
//! - injects faults per operation: `ThrottlingException`, an HTTP 5xx, an error code, or
//!   a lost answer (the request is carried out, its answer dropped), for the next N
//!   requests of that operation;
//! - rewrites DescribeServices deployments so rollouts can complete or fail (moto keeps one
//!   PRIMARY deployment forever and never fails it).
//!
//! It speaks just enough HTTP/1.1 for the AWS SDK: one request per connection
//! (`Connection: close`), bodies sized by Content-Length.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

pub use super::rewrites::Lifecycle;
use super::rewrites::{
    add_container_memory, name_service_deployments, rewrite_deployments, rewrite_tasks, service_deployments,
    strip_container_memory,
};

/// How DescribeServices answers are rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollouts {
    /// Pass moto's answer through.
    Moto,
    /// One PRIMARY deployment of the service's task definition, rollout COMPLETED.
    Complete,
    /// The deployment of the service's task definition FAILED (circuit breaker) and a
    /// rollback deployment is PRIMARY.
    Fail,
    /// One PRIMARY deployment of the service's task definition, IN_PROGRESS forever.
    Stuck,
}

/// How DescribeTasks answers are rewritten: every task STOPPED, its containers with this
/// exit code, or stopped before the container ran (`CannotStart`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    Exit(i32),
    CannotStart,
}

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Throttle,
    Status(u16),
    /// A 400 with this error code (`AccessDeniedException`, …).
    Code(&'static str),
    /// The request reaches moto and is carried out; its answer is lost (the connection
    /// closes without one), as on a reset after a write.
    LoseResponse,
    /// The request is forwarded after this long (a slow network or endpoint).
    Delay(Duration),
    /// The connection closes before the request reaches moto (not carried out).
    Drop,
}

/// Faults on a share of every request, from a seeded generator (the same run each time).
#[derive(Clone, Copy, Debug)]
struct Chaos {
    /// Per mille of requests that get `fault`.
    per_mille: u64,
    fault: Fault,
    state: u64,
}

impl Chaos {
    fn roll(&mut self) -> Option<Fault> {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33;
        (r % 1000 < self.per_mille).then_some(self.fault)
    }
}

#[derive(Default)]
struct State {
    counts: BTreeMap<String, u64>,
    describe_services_sizes: Vec<usize>,
    faults: BTreeMap<String, (Fault, u32)>,
    chaos: Option<Chaos>,
    rollouts: Option<Rollouts>,
    /// Per service name, overriding `rollouts`.
    rollouts_for: BTreeMap<String, Rollouts>,
    /// How DescribeTasks answers: moto keeps a task RUNNING forever.
    tasks: Option<TaskEnd>,
    /// A service deployment's course, per service name (moto has no service deployments).
    lifecycles: BTreeMap<String, Lifecycle>,
    /// Whether registered task definitions get container-level memory on moto's side.
    container_memory: bool,
    bodies: Vec<(String, String)>,
}

pub struct Proxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Mutex::new(State { rollouts: Some(Rollouts::Moto), ..State::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, up) = (st.clone(), upstream.clone());
                thread::spawn(move || {
                    let _ = handle(conn, &up, &st);
                });
            }
        });
        Proxy { endpoint: format!("http://127.0.0.1:{port}"), state, stop, port }
    }

    /// Fails the next `times` requests of `operation` (e.g. "DescribeServices").
    pub fn inject(&self, operation: &str, fault: Fault, times: u32) {
        self.state.lock().unwrap().faults.insert(operation.to_string(), (fault, times));
    }

    /// From now on, `percent` % of all AWS requests (reads and writes alike) get `fault`,
    /// chosen by a generator seeded with `seed`; `percent: 0` ends it.
    pub fn chaos(&self, percent: u64, fault: Fault, seed: u64) {
        self.state.lock().unwrap().chaos =
            (percent > 0).then_some(Chaos { per_mille: percent * 10, fault, state: seed.max(1) });
    }

    pub fn set_rollouts(&self, mode: Rollouts) {
        self.state.lock().unwrap().rollouts = Some(mode);
    }

    /// Rewrites the deployments of one service (by name) as `mode`, whatever the rest get.
    pub fn set_tasks(&self, end: TaskEnd) {
        self.state.lock().unwrap().tasks = Some(end);
    }

    /// From now on, task definitions registered through the proxy get each container a
    /// `memoryReservation` of the task's memory on moto's side, and lose it again in the
    /// answers: moto's RunTask needs container-level memory (a TypeError otherwise), which
    /// Fargate task definitions leave out. berth sees what it sent.
    pub fn set_container_memory(&self) {
        self.state.lock().unwrap().container_memory = true;
    }

    /// Gives `service` a service deployment that goes through `lifecycle`.
    pub fn set_lifecycle(&self, service: &str, lifecycle: Lifecycle) {
        self.state.lock().unwrap().lifecycles.insert(service.to_string(), lifecycle);
    }

    pub fn set_rollouts_for(&self, service: &str, mode: Rollouts) {
        self.state.lock().unwrap().rollouts_for.insert(service.to_string(), mode);
    }

    /// Requests seen per operation (each retry counts).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state.lock().unwrap().counts.clone()
    }

    pub fn count(&self, operation: &str) -> u64 {
        self.counts().get(operation).copied().unwrap_or(0)
    }

    /// Requests that change something: everything but Describe*/List*/Get*/BatchGet*.
    pub fn writes(&self) -> BTreeMap<String, u64> {
        self.counts()
            .into_iter()
            .filter(|(op, _)| !["Describe", "List", "Get", "BatchGet"].iter().any(|p| op.starts_with(p)))
            .collect()
    }

    /// How many names each DescribeServices request carried.
    pub fn describe_services_sizes(&self) -> Vec<usize> {
        self.state.lock().unwrap().describe_services_sizes.clone()
    }

    /// The request bodies of `operation`, in order.
    pub fn bodies(&self, operation: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .bodies
            .iter()
            .filter(|(op, _)| op == operation)
            .filter_map(|(_, b)| serde_json::from_str(b).ok())
            .collect()
    }

    pub fn reset_counts(&self) {
        let mut s = self.state.lock().unwrap();
        s.counts.clear();
        s.describe_services_sizes.clear();
        s.bodies.clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

struct Request {
    head: Vec<(String, String)>,
    start: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Request> {
    let mut start = String::new();
    reader.read_line(&mut start)?;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            head.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Request { head, start, body })
}

fn header<'a>(head: &'a [(String, String)], name: &str) -> Option<&'a str> {
    head.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// `X-Amz-Target: AmazonEC2ContainerServiceV20141113.DescribeServices` (JSON protocols),
/// or `Action=…` in a query-protocol body (STS).
fn operation(req: &Request) -> String {
    if let Some((_, op)) = req.start.split_whitespace().nth(1).and_then(|p| p.split_once("/operation/")) {
        return op.to_string();
    }
    // Route53 is a REST protocol: the operation is the method and the path.
    let mut parts = req.start.split_whitespace();
    if let (Some(method), Some(path)) = (parts.next(), parts.next())
        && path.starts_with("/2013-04-01/hostedzone/")
    {
        let rrset = path.split('?').next().unwrap_or(path).trim_end_matches('/').ends_with("/rrset");
        return match (method, rrset) {
            ("GET", true) => "ListResourceRecordSets",
            ("POST", true) => "ChangeResourceRecordSets",
            ("GET", false) => "GetHostedZone",
            _ => "Route53Other",
        }
        .to_string();
    }
    if let Some(t) = header(&req.head, "x-amz-target") {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    let body = String::from_utf8_lossy(&req.body);
    body.split('&').find_map(|kv| kv.strip_prefix("Action=")).map(str::to_string).unwrap_or_else(|| "unknown".into())
}

fn handle(conn: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let req = read_request(&mut reader)?;
    let op = operation(&req);
    let body_text = String::from_utf8_lossy(&req.body).into_owned();
    let (fault, rollouts) = {
        let mut s = state.lock().unwrap();
        *s.counts.entry(op.clone()).or_default() += 1;
        s.bodies.push((op.clone(), body_text.clone()));
        if op == "DescribeServices"
            && let Ok(v) = serde_json::from_str::<Value>(&body_text)
        {
            let n = v.get("services").and_then(Value::as_array).map_or(0, Vec::len);
            s.describe_services_sizes.push(n);
        }
        let fault = match s.faults.get_mut(&op) {
            Some((f, n)) if *n > 0 => {
                *n -= 1;
                Some(*f)
            }
            _ => s.chaos.as_mut().and_then(Chaos::roll),
        };
        let mut per_service = s.rollouts_for.clone();
        for (name, l) in &s.lifecycles {
            per_service.insert(name.clone(), l.rollouts());
        }
        (fault, (s.rollouts.unwrap_or(Rollouts::Moto), per_service, s.tasks))
    };
    if op == "DescribeServiceDeployments" && fault.is_none() {
        let answer = service_deployments(&body_text, &mut state.lock().unwrap().lifecycles);
        return write_response(&mut conn.try_clone()?, 200, "OK", "application/x-amz-json-1.1", answer.as_bytes());
    }
    let lifecycles: Vec<String> = state.lock().unwrap().lifecycles.keys().cloned().collect();
    let container_memory =
        state.lock().unwrap().container_memory && (op == "RegisterTaskDefinition" || op == "DescribeTaskDefinition");
    let mut req = req;
    if container_memory && op == "RegisterTaskDefinition" {
        req.body = add_container_memory(&req.body);
        for (k, v) in &mut req.head {
            if k.eq_ignore_ascii_case("content-length") {
                *v = req.body.len().to_string();
            }
        }
    }
    let mut out = conn;
    let lose = matches!(fault, Some(Fault::LoseResponse));
    match fault {
        Some(Fault::Delay(d)) => thread::sleep(d),
        Some(Fault::Drop) => return Ok(()),
        _ => {}
    }
    if let Some(f) = fault.filter(|f| !matches!(f, Fault::LoseResponse | Fault::Delay(_))) {
        let (status, reason, body) = match f {
            Fault::Throttle => {
                (400, "Bad Request", r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string())
            }
            Fault::Status(code) => {
                (code, "Error", format!(r#"{{"__type":"ServiceUnavailableException","message":"injected {code}"}}"#))
            }
            Fault::Code(code) => (400, "Bad Request", format!(r#"{{"__type":"{code}","message":"injected {code}"}}"#)),
            Fault::LoseResponse | Fault::Delay(_) | Fault::Drop => unreachable!("handled above"),
        };
        return write_response(&mut out, status, reason, "application/x-amz-json-1.1", body.as_bytes());
    }
    if req.start.contains("/service/GraniteServiceVersion20100801/operation/") {
        return cbor_to_json(req, &op, upstream, &mut out);
    }
    // Forward, one request per upstream connection.
    let mut up = TcpStream::connect(upstream)?;
    let mut head = req.start.trim_end().to_string();
    head.push_str("\r\n");
    for (k, v) in &req.head {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    if lose {
        return Ok(());
    }
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
    let (resp_head, resp_body) = resp.split_at(split);
    let resp_head = String::from_utf8_lossy(resp_head).into_owned();
    let mut lines = resp_head.lines();
    let status_line = lines.next().unwrap_or("HTTP/1.1 500 Error").to_string();
    let mut parts = status_line.splitn(3, ' ');
    let _ = parts.next();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(500);
    let reason = parts.next().unwrap_or("").to_string();
    let ctype = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "application/x-amz-json-1.1".into());
    let chunked = resp_head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let mut body = if chunked { dechunk(resp_body) } else { resp_body.to_vec() };
    if op == "DescribeServices" && status == 200 && (rollouts.0 != Rollouts::Moto || !rollouts.1.is_empty()) {
        body = rewrite_deployments(&body, &rollouts.0, &rollouts.1);
    }
    if op == "DescribeServices" && status == 200 && !lifecycles.is_empty() {
        body = name_service_deployments(&body, &lifecycles);
    }
    if container_memory && status == 200 {
        body = strip_container_memory(&body);
    }
    if let (true, 200, Some(end)) = (op == "DescribeTasks", status, rollouts.2) {
        body = rewrite_tasks(&body, end);
    }
    write_response(&mut out, status, &reason, &ctype, &body)
}

/// The Rust CloudWatch SDK speaks Smithy RPC v2 CBOR, which moto does not serve: decode the
/// CBOR request, send it to moto as CloudWatch's JSON 1.0 protocol, and encode the answer
/// back as CBOR.
fn cbor_to_json(req: Request, op: &str, upstream: &str, out: &mut TcpStream) -> std::io::Result<()> {
    let value: ciborium::Value = ciborium::from_reader(req.body.as_slice()).unwrap_or(ciborium::Value::Map(vec![]));
    let json = serde_json::to_vec(&cbor_json(value)).unwrap();
    let mut head = format!(
        "POST / HTTP/1.1\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: GraniteServiceVersion20100801.{op}\r\nContent-Length: {}\r\nConnection: close\r\n",
        json.len()
    );
    for (k, v) in &req.head {
        if ["host", "authorization", "x-amz-date", "x-amz-security-token"].contains(&k.to_ascii_lowercase().as_str()) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(head.as_bytes())?;
    up.write_all(&json)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
    let (h, b) = resp.split_at(split);
    let h = String::from_utf8_lossy(h).into_owned();
    let status: u16 = h.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(500);
    let body = if h.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(b) } else { b.to_vec() };
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Object(Default::default()));
    let mut cbor = Vec::new();
    ciborium::into_writer(&json_cbor(answer, ""), &mut cbor).unwrap();
    let head = format!(
        "HTTP/1.1 {status} OK\r\nContent-Type: application/cbor\r\nsmithy-protocol: rpc-v2-cbor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        cbor.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(&cbor)?;
    out.flush()
}

/// Smithy's CBOR protocol sends a timestamp as an epoch number under tag 1; JSON 1.0 as a
/// bare number. The timestamp members of the answers berth reads are tagged again.
fn json_cbor(v: Value, key: &str) -> ciborium::Value {
    use ciborium::Value as C;
    const TIMESTAMPS: &[&str] =
        &["LastModified", "Timestamp", "StateUpdatedTimestamp", "AlarmConfigurationUpdatedTimestamp"];
    match v {
        Value::Number(n) if TIMESTAMPS.contains(&key) => C::Tag(1, Box::new(C::Float(n.as_f64().unwrap_or(0.0)))),
        Value::Number(n) => match n.as_i64() {
            Some(i) => C::Integer(i.into()),
            None => C::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(t) => C::Text(t),
        Value::Bool(b) => C::Bool(b),
        Value::Null => C::Null,
        Value::Array(a) => C::Array(a.into_iter().map(|x| json_cbor(x, key)).collect()),
        Value::Object(m) => C::Map(
            m.into_iter()
                .map(|(k, v)| {
                    let v = json_cbor(v, &k);
                    (C::Text(k), v)
                })
                .collect(),
        ),
    }
}

fn cbor_json(v: ciborium::Value) -> Value {
    use ciborium::Value as C;
    match v {
        C::Integer(i) => Value::from(i128::from(i) as f64),
        C::Float(f) => Value::from(f),
        C::Text(t) => Value::from(t),
        C::Bool(b) => Value::from(b),
        C::Null => Value::Null,
        C::Tag(_, inner) => cbor_json(*inner),
        C::Array(a) => Value::Array(a.into_iter().map(cbor_json).collect()),
        C::Map(m) => {
            Value::Object(m.into_iter().filter_map(|(k, v)| k.into_text().ok().map(|k| (k, cbor_json(v)))).collect())
        }
        C::Bytes(b) => Value::from(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        _ => Value::Null,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).split(';').next().unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

fn write_response(out: &mut TcpStream, status: u16, reason: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}
