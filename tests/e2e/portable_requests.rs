//! Requests that work on any OpenAI-compatible server: extension fields (`top_k`,
//! `prs.policy_extra_body`) are dropped for a server that refuses them, OpenAI fields never are,
//! and preflight works against a server whose `/models` lists nothing.

use datafusion_prs::JobStats;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn extensions_a_server_refuses_are_dropped_for_it_and_counted() {
    let (strict, strict_fake) = start(Mode::Strict).await;
    let (normal, normal_fake) = start(Mode::Normal).await;
    let extra = r#"{"min_p": 0.05, "chat_template_kwargs": {"enable_thinking": false}}"#;
    let settings = [
        ("policy_model", "m"),
        ("seed", "5"),
        ("policy_extra_body", extra),
    ];
    let ctx = context(&strict, &normal, &settings).await;
    let sql = "SELECT prompt_id, sample_index, seed, response, reward, error \
               FROM prs_sample('p', 4) ORDER BY prompt_id, sample_index";
    let got = rows(&ctx, sql).await;
    assert!(
        strings(&got, "error").iter().all(Option::is_none),
        "{:?}",
        strings(&got, "error")
    );

    // the strict server refused the extensions once; every later request went without them
    let sent = requests(&strict_fake, "/chat/completions");
    let with_extensions = sent
        .iter()
        .filter(|r| r.body.get("top_k").is_some())
        .count();
    assert!(with_extensions >= 1, "the first requests carry top_k");
    let accepted: Vec<_> = sent
        .iter()
        .filter(|r| r.body.get("top_k").is_none())
        .collect();
    assert!(!accepted.is_empty());
    for r in &accepted {
        for field in ["top_k", "min_p", "chat_template_kwargs"] {
            assert!(r.body.get(field).is_none(), "{field} in {}", r.body);
        }
        // OpenAI fields are all still there
        for field in [
            "model",
            "messages",
            "n",
            "seed",
            "temperature",
            "top_p",
            "max_tokens",
        ] {
            assert!(
                r.body.get(field).is_some(),
                "{field} missing from {}",
                r.body
            );
        }
    }
    let s = JobStats::of(ctx.state().config()).snapshot();
    for field in [
        "policy.top_k",
        "policy.min_p",
        "policy.chat_template_kwargs",
    ] {
        assert_eq!(
            s.refused_fields.get(field),
            Some(&1),
            "{:?}",
            s.refused_fields
        );
    }

    // the same call against a server that takes the extensions: the same rows
    let ctx = context(&normal, &normal, &settings).await;
    let same = rows(&ctx, sql).await;
    for column in ["prompt_id", "seed", "response", "reward"] {
        assert_eq!(strings(&got, column), strings(&same, column), "{column}");
    }
    let sent = requests(&normal_fake, "/chat/completions");
    assert!(sent.iter().all(|r| r.body["top_k"] == json!(50)
        && r.body["min_p"] == json!(0.05)
        && r.body["chat_template_kwargs"]["enable_thinking"] == json!(false)));
    assert!(JobStats::of(ctx.state().config())
        .snapshot()
        .refused_fields
        .is_empty());
}

#[tokio::test]
async fn an_openai_field_is_never_dropped() {
    let (refusing, fake) = start(Mode::RefuseTemperature).await;
    let (normal, _) = start(Mode::Normal).await;
    let ctx = context(
        &refusing,
        &normal,
        &[("policy_model", "m"), ("preflight", "false")],
    )
    .await;
    let got = rows(&ctx, "SELECT error FROM random_sample('p', 2)").await;
    let errors = strings(&got, "error");
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref().is_some_and(|e| e.contains("HTTP 422"))),
        "{errors:?}"
    );
    let sent = requests(&fake, "/chat/completions");
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|r| r.body.get("temperature").is_some()));
    // 422 is not retried: one request per prompt
    assert_eq!(sent.len(), 2);
    assert!(JobStats::of(ctx.state().config())
        .snapshot()
        .refused_fields
        .is_empty());
}

#[tokio::test]
async fn preflight_asks_the_model_when_the_server_lists_none() {
    let (strict, fake) = start(Mode::Strict).await;
    let (normal, _) = start(Mode::Normal).await;
    // a model: the one-token probe answers, the job runs
    let ctx = context(&strict, &normal, &[("policy_model", "/tmp/model")]).await;
    let got = rows(&ctx, "SELECT error FROM random_sample('p', 1)").await;
    assert!(strings(&got, "error").iter().all(Option::is_none));
    let probes: Vec<_> = requests(&fake, "/chat/completions")
        .into_iter()
        .filter(|r| r.body["max_tokens"] == json!(1))
        .collect();
    assert!(!probes.is_empty(), "a one-token request checked the model");
    assert!(probes
        .iter()
        .all(|r| r.body["model"] == json!("/tmp/model")));

    // no model: nothing to ask, the check says what to set
    let ctx = context(&strict, &normal, &[]).await;
    let e = query_error(&ctx, "SELECT * FROM random_sample('p', 1)").await;
    assert!(e.contains("lists no models; set prs.policy_model"), "{e}");
}

#[tokio::test]
async fn extra_body_is_checked_when_the_call_is_planned() {
    let (normal, _) = start(Mode::Normal).await;
    for (extra, expected) in [
        ("[1, 2]", "expected a JSON object"),
        ("{min_p: 1}", "not JSON"),
        (
            r#"{"temperature": 0}"#,
            "\"temperature\" is a field prs sets itself; use prs.temperature",
        ),
    ] {
        let ctx = context(&normal, &normal, &[]).await;
        let sql = format!(
            "SELECT * FROM random_sample('p', 1, 'policy_extra_body=\"{}\"')",
            extra.replace('"', "\\\"")
        );
        let e = query_error(&ctx, &sql).await;
        assert!(
            e.contains("prs.policy_extra_body") && e.contains(expected),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_hidden_state_is_never_read_as_a_score() {
    let (normal, _) = start(Mode::Normal).await;
    let (hidden, fake) = start(Mode::HiddenStates).await;
    let settings = [("policy_model", "m")];
    // preflight scores one text and says what is wrong
    let ctx = context(&normal, &hidden, &settings).await;
    let e = query_error(&ctx, "SELECT * FROM random_sample('p', 2)").await;
    assert!(
        e.contains("preflight check failed") && e.contains("vector of 3 numbers"),
        "{e}"
    );

    // without preflight: error rows, no reward, and no retries of a fault that cannot mend
    let before = requests(&fake, "/pooling").len();
    let ctx = context(
        &normal,
        &hidden,
        &[("policy_model", "m"), ("preflight", "false")],
    )
    .await;
    let got = rows(&ctx, "SELECT reward, error FROM random_sample('p', 2)").await;
    assert!(strings(&got, "reward").iter().all(Option::is_none));
    assert!(strings(&got, "error")
        .iter()
        .all(|e| e.as_deref().is_some_and(|e| e.contains("not a score"))));
    let s = JobStats::of(ctx.state().config()).snapshot();
    assert_eq!(s.errors.get("reward_fault"), Some(&4), "{:?}", s.errors);
    assert_eq!(s.retries, 0);
    let sent = requests(&fake, "/pooling").len() - before;
    assert_eq!(sent as u64, s.reward_requests);
}

/// `prs.policy_priority`: each request carries vLLM's `priority`, lower for deeper work (layer 0
/// 0, the feedback before layer 1 -1, layer 1 -2); a server that refuses the field gets it no
/// more, and the refusal is counted.
#[tokio::test]
async fn priority_puts_deeper_work_first_and_is_dropped_where_refused() {
    let (url, fake) = start(Mode::Normal).await;
    let settings = [("policy_model", "m"), ("policy_priority", "true")];
    let ctx = context(&url, &url, &settings).await;
    rows(&ctx, "SELECT * FROM prs_sample('p', 4)").await;
    let mut seen: Vec<(i64, bool)> = requests(&fake, "/chat/completions")
        .iter()
        .filter(|r| r.body["max_tokens"] != 1) // (the preflight probe)
        .map(|r| {
            let feedback = user_text(&r.body).contains("Feedback (bullet points)");
            (r.body["priority"].as_i64().unwrap(), feedback)
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![(-2, false), (-1, true), (0, false)]);

    // off by default: the field is not sent at all
    let (url, fake) = start(Mode::Normal).await;
    let ctx = context(&url, &url, &[("policy_model", "m")]).await;
    rows(&ctx, "SELECT * FROM prs_sample('p', 4)").await;
    assert!(requests(&fake, "/chat/completions")
        .iter()
        .all(|r| r.body.get("priority").is_none()));

    // a server that refuses unknown fields: dropped after the first refusal, rows unharmed
    let (strict, fake) = start(Mode::Strict).await;
    let ctx = context(
        &strict,
        &url,
        &[
            ("policy_model", "m"),
            ("policy_priority", "true"),
            ("top_k", "-1"),
        ],
    )
    .await;
    let got = rows(&ctx, "SELECT error FROM prs_sample('p', 4)").await;
    assert!(strings(&got, "error").iter().all(Option::is_none));
    let sent = requests(&fake, "/chat/completions");
    assert!(sent
        .iter()
        .rev()
        .take(3)
        .all(|r| r.body.get("priority").is_none()));
    let s = JobStats::of(ctx.state().config()).snapshot();
    assert_eq!(
        s.refused_fields.get("policy.priority"),
        Some(&1),
        "{:?}",
        s.refused_fields
    );
}
