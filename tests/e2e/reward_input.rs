//! Reward input in the reward model's own format (`prs.reward_input`,
//! `prs.reward_chat_template_file`): conversations as `messages` to vLLM's `/pooling` and
//! `/classify`, conversations rendered here with a Hugging Face chat template (BOS handled),
//! and the checkpoint fingerprint following the mode.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Float64Type;
use serde_json::json;

use crate::common::*;

/// The reward column of `b`, in row order.
fn rewards(b: &datafusion::arrow::array::RecordBatch) -> Vec<Option<f64>> {
    let col = b
        .column_by_name("reward")
        .unwrap()
        .as_primitive::<Float64Type>();
    (0..b.num_rows())
        .map(|i| col.is_valid(i).then(|| col.value(i)))
        .collect()
}

const SQL: &str = "SELECT prompt_id, sample_index, response, reward, error \
                   FROM prs_sample('p', 4) ORDER BY prompt_id, sample_index";

/// `SQL` against a fresh fake with `settings`: the rows, and the requests the fake got on `path`.
async fn sampled(settings: &[(&str, &str)], path: &str) -> (RecordBatch, Vec<Req>) {
    let (url, fake) = start(Mode::Normal).await;
    let ctx = context(&url, &url, settings).await;
    let got = rows(&ctx, SQL).await;
    (got, requests(&fake, path))
}

#[tokio::test]
async fn conversations_reach_pooling_and_classify_as_messages() {
    for (protocol, path) in [("vllm-pooling", "/pooling"), ("vllm-classify", "/classify")] {
        // default reward input: chat, sent as messages for the server's own template
        let settings = [("reward_protocol", protocol), ("reward_model", "rm")];
        let (got, sent) = sampled(&settings, path).await;
        assert!(strings(&got, "error").iter().all(Option::is_none));
        // one conversation per request, no batched `input`; the preflight probe comes first
        assert!(
            sent.iter().all(|r| r.body.get("input").is_none()),
            "{:?}",
            sent[0].body
        );
        assert_eq!(sent.len(), 1 + got.num_rows(), "one request per candidate");
        for r in &sent {
            let m = r.body["messages"].as_array().unwrap();
            assert_eq!(
                (m.len(), &m[0]["role"], &m[1]["role"]),
                (2, &json!("user"), &json!("assistant"))
            );
            assert_eq!(r.body["model"], "rm");
        }
        // the user turn is the prompt with its per-row preference; the assistant turn the response
        let responses = strings(&got, "response");
        assert!(sent.iter().any(|r| r.body["messages"][0]["content"]
            == "What is rust?\n\nBe brief."
            && r.body["messages"][1]["content"] == json!(responses[0])));

        // the same candidates scored as text in the same (UltraRM) form get the same rewards
        let text = [
            ("reward_protocol", protocol),
            ("reward_model", "rm"),
            ("reward_input", "text"),
        ];
        let (as_text, _) = sampled(&text, path).await;
        assert_eq!(strings(&as_text, "response"), responses);
        assert_eq!(rewards(&as_text), rewards(&got), "{protocol}");
    }
}

/// The shape of Llama-3's chat template: BOS from the tokenizer, role headers,
/// `raise_exception` on roles out of order, `add_generation_prompt`.
const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

fn tokenizer_config(dir: &std::path::Path, template: &str) -> String {
    let path = dir.join("tokenizer_config.json");
    let config = json!({
        "bos_token": "<|begin_of_text|>",
        "eos_token": {"content": "<|eot_id|>", "lstrip": false},
        "chat_template": template,
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn chat_template_rendered_here_goes_batched_without_a_second_bos() {
    let dir = tempfile::tempdir().unwrap();
    let file = tokenizer_config(dir.path(), LLAMA3);
    let settings = [
        ("reward_chat_template_file", file.as_str()),
        ("reward_batch_size", "8"),
    ];
    let (got, sent) = sampled(&settings, "/pooling").await;
    assert!(strings(&got, "error").iter().all(Option::is_none));
    let scored: Vec<&Req> = sent.iter().skip(1).collect();
    // batched text: fewer requests than candidates, each text in the model's own format
    assert!(scored.len() < got.num_rows(), "{} requests", scored.len());
    let first = scored[0].body["input"][0].as_str().unwrap();
    assert!(first.starts_with("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is rust?\n\nBe brief.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), "{first}");
    assert!(first.ends_with("<|eot_id|>"), "{first}");
    // the text starts with BOS already: vLLM is told not to add another
    assert!(sent
        .iter()
        .all(|r| r.body["add_special_tokens"] == json!(false)));

    // a template that leaves BOS to the tokenizer: nothing to turn off
    let no_bos = LLAMA3.replace("bos_token + ", "");
    let file = tokenizer_config(dir.path(), &no_bos);
    let (_, sent) = sampled(&[("reward_chat_template_file", &file)], "/pooling").await;
    assert!(sent
        .iter()
        .all(|r| r.body.get("add_special_tokens").is_none()));
    assert!(sent[1].body["input"][0]
        .as_str()
        .unwrap()
        .starts_with("<|start_header_id|>user"));

    // any protocol takes rendered text: OpenRLHF gets the same texts, no vLLM fields
    let file = tokenizer_config(dir.path(), LLAMA3);
    let settings = [
        ("reward_chat_template_file", file.as_str()),
        ("reward_protocol", "openrlhf"),
    ];
    let (_, sent) = sampled(&settings, "/get_reward").await;
    assert!(sent[1].body["query"][0]
        .as_str()
        .unwrap()
        .starts_with("<|begin_of_text|>"));
    assert!(sent
        .iter()
        .all(|r| r.body.get("add_special_tokens").is_none()));
}

#[tokio::test]
async fn unusable_templates_and_servers_fail_at_planning_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = start(Mode::Normal).await;
    // a template that cannot render a user/assistant exchange: its own message, before any request
    let strict = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('System message required') }}{% endif %}";
    let file = tokenizer_config(dir.path(), strict);
    let ctx = context(&url, &url, &[("reward_chat_template_file", &file)]).await;
    let e = query_error(&ctx, SQL).await;
    assert!(
        e.contains("System message required") && e.contains("reward_chat_template_file"),
        "{e}"
    );

    // conversations to a text-only protocol
    let ctx = context(
        &url,
        &url,
        &[("reward_protocol", "tei"), ("reward_input", "chat")],
    )
    .await;
    let e = query_error(&ctx, SQL).await;
    assert!(
        e.contains("reward_chat_template_file") && e.contains("tei"),
        "{e}"
    );

    // a server without a chat template: preflight says so and names the ways out
    let (bare, _) = start(Mode::NoChatTemplate).await;
    let ctx = context(&url, &bare, &[]).await;
    let e = query_error(&ctx, SQL).await;
    assert!(
        e.contains("preflight") && e.contains("reward_input = text") && e.contains("chat template"),
        "{e}"
    );
}

#[tokio::test]
async fn checkpoints_follow_the_reward_input() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let ckpt = ckpt.to_str().unwrap();
    let file = tokenizer_config(dir.path(), LLAMA3);
    let (url, _) = start(Mode::Normal).await;
    let mut fingerprints = std::collections::BTreeSet::new();
    for extra in [
        vec![("reward_input", "text")],
        vec![],
        vec![("reward_chat_template_file", file.as_str())],
    ] {
        let mut settings = vec![("checkpoint_dir", ckpt)];
        settings.extend(extra);
        let ctx = context(&url, &url, &settings).await;
        rows(&ctx, SQL).await;
        fingerprints = std::fs::read_dir(ckpt)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
    }
    // three modes, three calls: no run served another's rewards
    assert_eq!(fingerprints.len(), 3, "{fingerprints:?}");
    // a changed template is another call too
    std::fs::write(&file, json!({"chat_template": LLAMA3.replace("<|eot_id|>", "<|end|>"), "bos_token": "<|begin_of_text|>"}).to_string()).unwrap();
    let ctx = context(
        &url,
        &url,
        &[
            ("checkpoint_dir", ckpt),
            ("reward_chat_template_file", file.as_str()),
        ],
    )
    .await;
    rows(&ctx, SQL).await;
    assert_eq!(std::fs::read_dir(ckpt).unwrap().count(), 4);
}
