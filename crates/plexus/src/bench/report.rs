//! A scenario's figures: named, unit-suffixed values kept in order, printed as one JSON object
//! per line or as one aligned line for people; and latency percentiles.

use std::time::Duration;

use serde_json::Value;

/// One printed object: `scenario` first, then the figures in the order they were added.
#[derive(Debug, Clone)]
pub struct Report {
    scenario: &'static str,
    figures: Vec<(&'static str, Value)>,
}

impl Report {
    /// An empty report of `scenario`.
    pub fn new(scenario: &'static str) -> Report {
        Report {
            scenario,
            figures: Vec::new(),
        }
    }

    /// Adds a figure; floats are rounded to what the measurement can tell.
    pub fn with(mut self, name: &'static str, value: impl Into<Value>) -> Report {
        let value = match value.into() {
            Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().unwrap_or_default();
                let digits = if x.abs() >= 100.0 {
                    0
                } else if x.abs() >= 1.0 {
                    2
                } else {
                    4
                };
                let scale = 10f64.powi(digits);
                Value::from((x * scale).round() / scale)
            }
            other => other,
        };
        self.figures.push((name, value));
        self
    }

    /// Adds `p50_us`, `p90_us`, `p99_us` and `max_us`.
    pub fn with_latencies(self, l: &Latencies) -> Report {
        self.with("p50_us", l.p50_us())
            .with("p90_us", micros(l.percentile(0.90)))
            .with("p99_us", micros(l.percentile(0.99)))
            .with("max_us", micros(l.percentile(1.0)))
    }

    /// One JSON object on one line, keys in order.
    pub fn json_line(&self) -> String {
        let mut line = format!("{{\"scenario\":{}", Value::from(self.scenario));
        for (name, value) in &self.figures {
            line.push_str(&format!(",{}:{value}", Value::from(*name)));
        }
        line.push('}');
        line
    }

    /// One line for people: the scenario, then `name=value` pairs.
    pub fn human_line(&self) -> String {
        let mut line = format!("{:<15}", self.scenario);
        for (name, value) in &self.figures {
            line.push_str(&format!(" {name}={value}"));
        }
        line
    }
}

/// Round-trip times of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Sorts the samples.
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies(samples)
    }

    /// The `p` quantile (0.0 to 1.0), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(i).copied().unwrap_or_default()
    }

    /// The median in microseconds.
    pub fn p50_us(&self) -> f64 {
        micros(self.percentile(0.5))
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// A duration in microseconds.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}
