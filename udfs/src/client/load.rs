//! A policy server's load as it reports it: the Prometheus gauges vLLM and SGLang serve at
//! `/metrics` for requests running and waiting. The prompt window grows while the servers
//! report nothing waiting (`run/admission.rs`): a small job on a large server then starts its
//! prompts at once instead of a window's worth at a time.

/// Requests running and waiting at the policy servers (summed over replicas and engines).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerLoad {
    pub running: f64,
    pub waiting: f64,
}

/// The gauges each server family names: (running, waiting).
const GAUGES: &[(&str, &str)] = &[
    ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    ("sglang:num_running_reqs", "sglang:num_queue_reqs"),
];

/// The load in one server's Prometheus text: each family's gauges summed over their label
/// sets. `None` when the text holds no family's running and waiting gauges both.
pub fn parse_metrics(text: &str) -> Option<ServerLoad> {
    let mut found = [(None::<f64>, None::<f64>); GAUGES.len()];
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        // the value follows the labels; an optional timestamp follows the value
        let after_labels = match line[name_end..].find('}') {
            Some(close) if line[name_end..].starts_with('{') => &line[name_end + close + 1..],
            _ => &line[name_end..],
        };
        let Some(value) = after_labels
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
        else {
            continue;
        };
        for ((running, waiting), slot) in GAUGES.iter().zip(found.iter_mut()) {
            if name == *running {
                slot.0 = Some(slot.0.unwrap_or(0.0) + value);
            } else if name == *waiting {
                slot.1 = Some(slot.1.unwrap_or(0.0) + value);
            }
        }
    }
    found.into_iter().find_map(|pair| match pair {
        (Some(running), Some(waiting)) => Some(ServerLoad { running, waiting }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_and_sglang_gauges_are_read_and_summed() {
        let vllm = "# HELP vllm:num_requests_running Number of requests.\n\
                    # TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 12.0\n\
                    vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 3.0\n\
                    vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 0.0\n\
                    vllm:num_requests_waiting{engine=\"1\",model_name=\"m\"} 2 1712345678\n\
                    vllm:num_requests_waiting_by_reason{reason=\"capacity\"} 9.0\n\
                    vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n";
        assert_eq!(
            parse_metrics(vllm),
            Some(ServerLoad {
                running: 15.0,
                waiting: 2.0
            })
        );
        let sglang = "sglang:num_running_reqs{model_name=\"m\"} 7\nsglang:num_queue_reqs 0\n";
        assert_eq!(
            parse_metrics(sglang),
            Some(ServerLoad {
                running: 7.0,
                waiting: 0.0
            })
        );
    }

    #[test]
    fn text_without_both_gauges_is_no_load() {
        assert_eq!(parse_metrics(""), None);
        assert_eq!(parse_metrics("<html>not found</html>"), None);
        // running alone says nothing about a queue
        assert_eq!(parse_metrics("vllm:num_requests_running 4\n"), None);
        // values that are no count are skipped
        let odd = "vllm:num_requests_running NaN\nvllm:num_requests_waiting -1\n";
        assert_eq!(parse_metrics(odd), None);
    }
}
