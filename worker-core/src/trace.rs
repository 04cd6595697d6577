//! Trace context a task arrives with: the parent trace its span joins.
//!
//! Two carriers, as Step Functions users have them:
//! - SQS's `AWSTraceHeader` system attribute (X-Ray format,
//!   `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`),
//!   which SQS sets when the sender traces (Step Functions with X-Ray
//!   tracing on, or any X-Ray/OpenTelemetry-instrumented sender);
//! - a W3C `traceparent` string
//!   (`00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`) at a JSON
//!   pointer in the task's input (`traceparent_pointer`), for senders that
//!   carry it in the payload (`"traceparent.$": "$.traceparent"`).
//!
//! An X-Ray trace id is a W3C trace id written differently: the 8 hex digits
//! of its time and its 24 random digits are the 32 digits of the W3C id, as
//! the OpenTelemetry X-Ray propagator maps them.

use std::fmt;

/// A parent trace: trace id, parent span id, sampled flag.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id, 16 bytes (never all zero).
    pub trace_id: [u8; 16],
    /// The parent span's id, 8 bytes; `None` when the carrier had none.
    pub parent_id: Option<[u8; 8]>,
    /// Whether the sender sampled this trace.
    pub sampled: bool,
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &self.trace_id_hex())
            .field("parent_id", &self.parent_id.map(|p| hex(&p)))
            .field("sampled", &self.sampled)
            .finish()
    }
}

impl TraceContext {
    /// The trace id as 32 lower-case hex digits (the W3C form, what logs show).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// Parse an `AWSTraceHeader` value. `None` if it has no valid `Root`.
    pub fn from_aws_trace_header(value: &str) -> Option<Self> {
        let mut trace_id = None;
        let mut parent_id = None;
        let mut sampled = false;
        // Empty parts (a trailing `;`) and parts that are not `key=value`
        // are skipped: the header is extensible, only `Root` is required.
        for part in value.split(';') {
            let Some((key, v)) = part.trim().split_once('=') else {
                continue;
            };
            match key {
                "Root" => {
                    // 1-{8 hex time}-{24 hex random}
                    let mut fields = v.split('-');
                    let (Some("1"), Some(time), Some(random), None) =
                        (fields.next(), fields.next(), fields.next(), fields.next())
                    else {
                        return None;
                    };
                    if time.len() != 8 || random.len() != 24 {
                        return None;
                    }
                    let mut id = [0u8; 16];
                    unhex(time, &mut id[..4])?;
                    unhex(random, &mut id[4..])?;
                    trace_id = Some(id);
                }
                "Parent" => {
                    let mut id = [0u8; 8];
                    if v.len() == 16 && unhex(v, &mut id).is_some() && id != [0; 8] {
                        parent_id = Some(id);
                    }
                }
                "Sampled" => sampled = v == "1",
                _ => {}
            }
        }
        let trace_id = trace_id.filter(|id| *id != [0; 16])?;
        Some(Self {
            trace_id,
            parent_id,
            sampled,
        })
    }

    /// Parse a W3C `traceparent`. `None` unless it is well formed.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let value = value.trim();
        // The spec's hex is lower case; `00-ABC...` is not a traceparent.
        // (Only the four fields of version 00: a later version's extra
        // fields are not ours to judge.)
        let fields = value.get(..55).unwrap_or(value);
        if fields.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut fields = value.split('-');
        let (version, trace, parent, flags) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        // Version 00 has exactly four fields; later versions may add more.
        if version.len() != 2 || version == "ff" || (version == "00" && fields.next().is_some()) {
            return None;
        }
        let mut v = [0u8; 1];
        unhex(version, &mut v)?;
        if trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        let mut flag = [0u8; 1];
        unhex(trace, &mut trace_id)?;
        unhex(parent, &mut parent_id)?;
        unhex(flags, &mut flag)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id: Some(parent_id),
            sampled: flag[0] & 1 == 1,
        })
    }

    /// The `traceparent` string at `pointer` in the JSON `input`, parsed.
    pub fn from_input(input: &str, pointer: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(input).ok()?;
        Self::from_traceparent(value.pointer(pointer)?.as_str()?)
    }
}

/// Make `span` a child of `trace` in OpenTelemetry. Without a parent span
/// id there is no parent to name: the span keeps its own trace, and the
/// trace id is in its `trace_id` field and the logs.
#[cfg(feature = "opentelemetry")]
pub(crate) fn set_parent(span: &tracing::Span, trace: &TraceContext) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(parent_id) = trace.parent_id else {
        return;
    };
    let flags = if trace.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let parent = SpanContext::new(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(parent_id),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Fill `out` from exactly `2 * out.len()` hex digits.
fn unhex(text: &str, out: &mut [u8]) -> Option<()> {
    let text = text.as_bytes();
    if text.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    for (i, pair) in text.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_ray_header_maps_to_the_w3c_trace_id() {
        let t = TraceContext::from_aws_trace_header(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .expect("parsed");
        assert_eq!(t.trace_id_hex(), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(
            t.parent_id.map(|p| hex(&p)).as_deref(),
            Some("53995c3f42cd8ad8")
        );
        assert!(t.sampled);
        // Lineage and other keys are ignored; no parent is fine.
        let t = TraceContext::from_aws_trace_header(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0;Lineage=a87bd80c:1|68fd508a:5",
        )
        .expect("parsed");
        assert_eq!(t.parent_id, None);
        assert!(!t.sampled);
        // A trailing `;` or an empty part does not lose the trace.
        let t = TraceContext::from_aws_trace_header(
            "Root=1-5759e988-bd862e3fe1be46a994272793;;Parent=53995c3f42cd8ad8;Sampled=1;",
        )
        .expect("parsed");
        assert_eq!(t.trace_id_hex(), "5759e988bd862e3fe1be46a994272793");
        assert!(t.sampled);
    }

    #[test]
    fn malformed_x_ray_headers_are_refused() {
        for bad in [
            "",
            "Parent=53995c3f42cd8ad8",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e98-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a99427279z",
            "Root=1-00000000-000000000000000000000000",
            "Root",
            "Sampled=1;",
        ] {
            assert_eq!(TraceContext::from_aws_trace_header(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn traceparent_parses_and_refuses_as_the_spec_says() {
        let t = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .expect("parsed");
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_id.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(t.sampled);
        // A later version may carry more fields.
        assert!(
            TraceContext::from_traceparent(
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra"
            )
            .is_some_and(|t| !t.sampled)
        );
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "not a traceparent",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn traceparent_is_read_at_the_pointer() {
        let input = r#"{"order": 7, "_trace": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}"#;
        let t = TraceContext::from_input(input, "/_trace/traceparent").expect("found");
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(TraceContext::from_input(input, "/traceparent"), None);
        assert_eq!(TraceContext::from_input("not json", "/traceparent"), None);
        assert_eq!(
            TraceContext::from_input(r#"{"traceparent": 5}"#, "/traceparent"),
            None
        );
    }
}
