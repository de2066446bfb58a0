//! error.log: a tracing layer that queues WARN and ERROR events, as nginx-style lines
//! (`2026/11/29 13:47:02 [error] 7#0: message, key: value`), to the log writer thread; a call
//! site that floods is summarised instead (`throttle`).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, Filtered, filter_fn};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::queue::{Msg, Sink};

const TIMESTAMP: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");

/// One error.log line without the newline: `2026/11/29 13:47:02 [warn] 7#0: text` (UTC).
pub fn format_line(now: time::OffsetDateTime, level: &str, text: &str) -> String {
    let ts = now
        .to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .unwrap_or_else(|_| "-".to_owned());
    let mut line = format!("{ts} [{level}] {}#0: ", std::process::id());
    // One event, one line: embedded line breaks are escaped.
    for c in text.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            c => line.push(c),
        }
    }
    line
}

/// The layer behind `Logs::error_layer`.
#[derive(Debug)]
pub struct ErrorLayer {
    sink: Sink,
}

/// What the error layer looks at: events at WARN and above, and spans at INFO and above (for
/// their fields, e.g. a request id, appended to each line).
fn interesting(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        *meta.level() <= Level::INFO
    } else {
        *meta.level() <= Level::WARN
    }
}

/// The filtered error layer, ready to add to a `tracing_subscriber::registry()`.
pub(crate) fn layer<S>(sink: Sink) -> Filtered<ErrorLayer, FilterFn, S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ErrorLayer { sink }.with_filter(filter_fn(interesting as fn(&Metadata<'_>) -> bool))
}

/// Span fields as already formatted `, key: value` pairs.
struct SpanFields(String);

/// Formats fields nginx-style: the message first, then `, key: value` for each field.
struct Fields<'a> {
    message: Option<&'a mut String>,
    rest: &'a mut String,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(text, ": {s}");
            source = s.source();
        }
        self.record_debug(field, &format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        match &mut self.message {
            Some(msg) if name == "message" => {
                let _ = write!(msg, "{value:?}");
            }
            _ => {
                let _ = write!(self.rest, ", {name}: {value:?}");
            }
        }
    }
}

impl<S> Layer<S> for ErrorLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut text = String::new();
        attrs.record(&mut Fields {
            message: None,
            rest: &mut text,
        });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(text));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(fields) = ext.get_mut::<SpanFields>() {
            values.record(&mut Fields {
                message: None,
                rest: &mut fields.0,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            _ => return,
        };
        let mut message = String::new();
        let mut rest = String::new();
        event.record(&mut Fields {
            message: Some(&mut message),
            rest: &mut rest,
        });
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    rest.push_str(&fields.0);
                }
            }
        }
        if message.is_empty() {
            message.push_str(event.metadata().target());
        }
        message.push_str(&rest);
        let now = time::OffsetDateTime::now_utc();
        // A line about one request (it names its id) pairs with that request's access log
        // entry, as nginx writes it: never throttled.
        let (write, summary) = match event.metadata().fields().field("request_id") {
            Some(_) => (true, None),
            None => self.sink.throttle().admit(
                event.metadata().callsite(),
                level,
                || message.clone(),
                std::time::Instant::now(),
            ),
        };
        if let Some((level, text)) = summary {
            self.sink.offer(Msg::Error(format_line(now, level, &text)));
        }
        if write {
            self.sink
                .offer(Msg::Error(format_line(now, level, &message)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn lines_look_like_nginx() {
        let line = format_line(
            datetime!(2026-11-29 13:47:02 UTC),
            "error",
            "upstream down\nretry",
        );
        let pid = std::process::id();
        assert_eq!(
            line,
            format!("2026/11/29 13:47:02 [error] {pid}#0: upstream down\\nretry")
        );
    }
}
