//! Traces: the traffic a simulation replays, read from CSV.
//!
//! Two shapes, told apart by the header line:
//! - `time_s,rps` or `time_s,rps,mean_duration_s`: a rate that holds from each row's time until
//!   the next row's (the last row holds as long as the row before it did, or 1 s if it is the
//!   only one). Requests arrive evenly spaced at that rate, carried over from row to row, so 0.5
//!   rps for 4 s gives two requests; each takes `mean_duration_s`, or the model's service time.
//! - `arrival_s,duration_s`: one request per row, in arrival order.
//!
//! Blank lines and lines starting with `#` are skipped. Every error names its line.

use std::time::Duration;

/// A trace that cannot be read: what is wrong, and on which line (counting from 1).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    /// The first line that is not blank or a comment is not a known header.
    #[error(
        "line {line}: expected a header `time_s,rps`, `time_s,rps,mean_duration_s` or `arrival_s,duration_s`, found `{found}`"
    )]
    Header {
        /// The line.
        line: usize,
        /// What it said.
        found: String,
    },
    /// A row has the wrong number of fields.
    #[error("line {line}: expected {expected} fields ({header}), found {found}")]
    Fields {
        /// The line.
        line: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields on the line.
        found: usize,
        /// The header's fields.
        header: String,
    },
    /// A field is not a number.
    #[error("line {line}: {column} `{value}` is not a number")]
    NotANumber {
        /// The line.
        line: usize,
        /// The column's name.
        column: &'static str,
        /// The field as written.
        value: String,
    },
    /// A number is outside what its column allows.
    #[error("line {line}: {column} {value} must be {rule}")]
    OutOfRange {
        /// The line.
        line: usize,
        /// The column's name.
        column: &'static str,
        /// The number.
        value: f64,
        /// What it must be.
        rule: &'static str,
    },
    /// A time goes backwards.
    #[error(
        "line {line}: {column} {value} does not come after {previous} on the row above; rows must be in time order"
    )]
    OutOfOrder {
        /// The line.
        line: usize,
        /// The column's name.
        column: &'static str,
        /// The time on this line.
        value: f64,
        /// The time on the row before.
        previous: f64,
    },
    /// A header and no rows.
    #[error("the trace has a header but no rows")]
    Empty,
}

/// A rate that holds from `time_s` until the next row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRow {
    /// When the rate starts, in seconds from the start of the trace.
    pub time_s: f64,
    /// Requests per second.
    pub rps: f64,
    /// How long each request takes a replica, if the trace says.
    pub mean_duration_s: Option<f64>,
}

/// One request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// When it arrives, in seconds from the start of the trace.
    pub arrival_s: f64,
    /// How long it takes a replica.
    pub duration_s: f64,
}

/// A parsed trace.
#[derive(Debug, Clone, PartialEq)]
pub enum Trace {
    /// Rates over time.
    Rates(Vec<RateRow>),
    /// Single requests.
    Requests(Vec<Request>),
}

/// One request as the simulation sees it, times in microseconds from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// When it arrives.
    pub at_us: u64,
    /// How long it takes a replica.
    pub duration_us: u64,
}

const RATE_HEADER: [&str; 2] = ["time_s", "rps"];
const RATE_DURATION_HEADER: [&str; 3] = ["time_s", "rps", "mean_duration_s"];
const REQUEST_HEADER: [&str; 2] = ["arrival_s", "duration_s"];

fn micros(seconds: f64) -> u64 {
    // Parsing keeps every time finite and non-negative; `as` saturates past u64.
    (seconds * 1e6).round() as u64
}

impl Trace {
    /// Reads a trace from CSV text.
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let Some((header_line, header)) = lines.next() else {
            return Err(TraceError::Header {
                line: 1,
                found: String::new(),
            });
        };
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        let trace = if columns == RATE_HEADER || columns == RATE_DURATION_HEADER {
            let names: &'static [&'static str] = if columns.len() == 3 {
                &RATE_DURATION_HEADER
            } else {
                &RATE_HEADER
            };
            let mut rows: Vec<RateRow> = Vec::new();
            for (line, text) in lines {
                let f = fields(line, text, names)?;
                let time_s = at_least_zero(line, names[0], f[0])?;
                if let Some(previous) = rows.last()
                    && time_s <= previous.time_s
                {
                    return Err(TraceError::OutOfOrder {
                        line,
                        column: names[0],
                        value: time_s,
                        previous: previous.time_s,
                    });
                }
                let rps = at_least_zero(line, names[1], f[1])?;
                let mean_duration_s = match f.get(2) {
                    Some(&d) => Some(above_zero(line, names[2], d)?),
                    None => None,
                };
                rows.push(RateRow {
                    time_s,
                    rps,
                    mean_duration_s,
                });
            }
            Trace::Rates(rows)
        } else if columns == REQUEST_HEADER {
            let mut rows: Vec<Request> = Vec::new();
            for (line, text) in lines {
                let f = fields(line, text, &REQUEST_HEADER)?;
                let arrival_s = at_least_zero(line, REQUEST_HEADER[0], f[0])?;
                if let Some(previous) = rows.last()
                    && arrival_s < previous.arrival_s
                {
                    return Err(TraceError::OutOfOrder {
                        line,
                        column: REQUEST_HEADER[0],
                        value: arrival_s,
                        previous: previous.arrival_s,
                    });
                }
                let duration_s = at_least_zero(line, REQUEST_HEADER[1], f[1])?;
                rows.push(Request {
                    arrival_s,
                    duration_s,
                });
            }
            Trace::Requests(rows)
        } else {
            return Err(TraceError::Header {
                line: header_line,
                found: header.to_owned(),
            });
        };
        if trace.is_empty() {
            return Err(TraceError::Empty);
        }
        Ok(trace)
    }

    fn is_empty(&self) -> bool {
        match self {
            Trace::Rates(rows) => rows.is_empty(),
            Trace::Requests(rows) => rows.is_empty(),
        }
    }

    /// When the trace ends, in microseconds: the end of the last rate row, or when the last
    /// request would finish if it were served at once.
    pub fn end_us(&self) -> u64 {
        match self {
            Trace::Rates(rows) => rate_spans(rows).last().map_or(0, |(_, end)| micros(*end)),
            Trace::Requests(rows) => rows
                .iter()
                .map(|r| micros(r.arrival_s + r.duration_s))
                .max()
                .unwrap_or(0),
        }
    }

    /// Every request, in arrival order; rows without a duration take `service_time`.
    pub fn arrivals(&self, service_time: Duration) -> Box<dyn Iterator<Item = Arrival> + '_> {
        let service_us = u64::try_from(service_time.as_micros()).unwrap_or(u64::MAX);
        match self {
            Trace::Requests(rows) => Box::new(rows.iter().map(|r| Arrival {
                at_us: micros(r.arrival_s),
                duration_us: micros(r.duration_s),
            })),
            Trace::Rates(rows) => Box::new(RateArrivals {
                spans: rate_spans(rows).into_iter().zip(rows.iter()),
                current: None,
                owed: 0.0,
                emitted: 0,
                service_us,
            }),
        }
    }
}

/// Each rate row's `[start, end)` in seconds.
fn rate_spans(rows: &[RateRow]) -> Vec<(f64, f64)> {
    let mut spans = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let end = match (rows.get(i + 1), i.checked_sub(1).map(|p| rows[p])) {
            (Some(next), _) => next.time_s,
            (None, Some(previous)) => row.time_s + (row.time_s - previous.time_s),
            (None, None) => row.time_s + 1.0,
        };
        spans.push((row.time_s, end));
    }
    spans
}

/// Evenly spaced arrivals through the rate rows. The cumulative count of requests is the
/// integral of the rate; request `k` (from 0) arrives where it crosses `k + ½`. Counting
/// requests rather than spreading each row on its own keeps every request exactly once, however
/// the rows' fractions add up.
struct RateArrivals<I> {
    spans: I,
    current: Option<Span>,
    /// The integral of the rate at the start of `current`.
    owed: f64,
    /// Requests given so far.
    emitted: u64,
    service_us: u64,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: f64,
    end: f64,
    rps: f64,
    duration_us: u64,
}

impl<'a, I: Iterator<Item = ((f64, f64), &'a RateRow)>> Iterator for RateArrivals<I> {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        loop {
            if let Some(span) = self.current {
                if span.rps > 0.0 {
                    let due = self.emitted as f64 + 0.5 - self.owed;
                    let at = (span.start + due / span.rps).max(span.start);
                    if at < span.end {
                        self.emitted += 1;
                        return Some(Arrival {
                            at_us: micros(at),
                            duration_us: span.duration_us,
                        });
                    }
                }
                self.owed += span.rps * (span.end - span.start);
                self.current = None;
            }
            let ((start, end), row) = self.spans.next()?;
            self.current = Some(Span {
                start,
                end,
                rps: row.rps,
                duration_us: row.mean_duration_s.map_or(self.service_us, micros),
            });
        }
    }
}

/// A row's fields, as many as the header has.
fn fields<'t>(line: usize, text: &'t str, names: &[&str]) -> Result<Vec<&'t str>, TraceError> {
    let f: Vec<&str> = text.split(',').map(str::trim).collect();
    if f.len() != names.len() {
        return Err(TraceError::Fields {
            line,
            expected: names.len(),
            found: f.len(),
            header: names.join(","),
        });
    }
    Ok(f)
}

fn number(line: usize, column: &'static str, value: &str) -> Result<f64, TraceError> {
    value.parse::<f64>().map_err(|_| TraceError::NotANumber {
        line,
        column,
        value: value.to_owned(),
    })
}

fn at_least_zero(line: usize, column: &'static str, value: &str) -> Result<f64, TraceError> {
    let n = number(line, column, value)?;
    if n.is_finite() && n >= 0.0 {
        Ok(n)
    } else {
        Err(TraceError::OutOfRange {
            line,
            column,
            value: n,
            rule: "a finite number of at least 0",
        })
    }
}

fn above_zero(line: usize, column: &'static str, value: &str) -> Result<f64, TraceError> {
    let n = number(line, column, value)?;
    if n.is_finite() && n > 0.0 {
        Ok(n)
    } else {
        Err(TraceError::OutOfRange {
            line,
            column,
            value: n,
            rule: "a finite number above 0",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrivals(text: &str) -> Vec<(u64, u64)> {
        Trace::parse(text)
            .expect("a valid trace")
            .arrivals(Duration::from_millis(100))
            .map(|a| (a.at_us, a.duration_us))
            .collect()
    }

    #[test]
    fn rates_spread_requests_evenly_and_carry_fractions_across_rows() {
        assert_eq!(
            arrivals("time_s,rps\n0,2\n1,0.5\n5,0\n"),
            [
                (250_000, 100_000),
                (750_000, 100_000),
                // 0.5 rps from 1 s: the integral crosses 2.5 at 2 s and 3.5 at 4 s.
                (2_000_000, 100_000),
                (4_000_000, 100_000),
            ]
        );
    }

    #[test]
    fn the_last_row_lasts_as_long_as_the_one_before() {
        let trace = Trace::parse("time_s,rps\n0,1\n10,1\n").expect("valid");
        assert_eq!(trace.end_us(), 20_000_000);
        assert_eq!(trace.arrivals(Duration::ZERO).count(), 20);
        let single = Trace::parse("time_s,rps\n5,3\n").expect("valid");
        assert_eq!(single.end_us(), 6_000_000);
        assert_eq!(single.arrivals(Duration::ZERO).count(), 3);
    }

    #[test]
    fn mean_durations_and_single_requests() {
        assert_eq!(
            arrivals("# a comment\ntime_s, rps, mean_duration_s\n\n0,1,0.25\n1,1,2\n"),
            [(500_000, 250_000), (1_500_000, 2_000_000)]
        );
        let trace = "arrival_s,duration_s\n0.5,0.1\n0.5,3\n7,0\n";
        assert_eq!(
            arrivals(trace),
            [(500_000, 100_000), (500_000, 3_000_000), (7_000_000, 0)]
        );
        assert_eq!(Trace::parse(trace).expect("valid").end_us(), 7_000_000);
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        let error = |text: &str| Trace::parse(text).expect_err("invalid").to_string();
        assert_eq!(
            error("# rates\nseconds,rps\n0,1\n"),
            "line 2: expected a header `time_s,rps`, `time_s,rps,mean_duration_s` or `arrival_s,duration_s`, found `seconds,rps`"
        );
        assert_eq!(
            error("time_s,rps\n0,1\n1,2,3\n"),
            "line 3: expected 2 fields (time_s,rps), found 3"
        );
        assert_eq!(
            error("time_s,rps\n0,1\n1,lots\n"),
            "line 3: rps `lots` is not a number"
        );
        assert_eq!(
            error("time_s,rps\n0,-1\n"),
            "line 2: rps -1 must be a finite number of at least 0"
        );
        assert_eq!(
            error("time_s,rps,mean_duration_s\n0,1,0\n"),
            "line 2: mean_duration_s 0 must be a finite number above 0"
        );
        assert_eq!(
            error("time_s,rps\n0,1\n\n5,1\n5,2\n"),
            "line 5: time_s 5 does not come after 5 on the row above; rows must be in time order"
        );
        assert_eq!(
            error("arrival_s,duration_s\n3,1\n2,1\n"),
            "line 3: arrival_s 2 does not come after 3 on the row above; rows must be in time order"
        );
        assert_eq!(error("time_s,rps\n"), "the trace has a header but no rows");
        assert_eq!(
            error(""),
            "line 1: expected a header `time_s,rps`, `time_s,rps,mean_duration_s` or `arrival_s,duration_s`, found ``"
        );
        assert_eq!(
            error("time_s,rps\n0,inf\n"),
            "line 2: rps inf must be a finite number of at least 0"
        );
    }
}
