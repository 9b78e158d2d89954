//! The cost model of a dry run: what one prompt of a call costs when the servers honour `n`
//! (servers that ignore it, and retries, add requests).

/// What one prompt costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptCost {
    pub policy_requests: u64,
    /// Reward requests if no batch held texts of other prompts (the most there can be).
    pub reward_requests: u64,
    /// Texts scored: one per candidate.
    pub reward_texts: u64,
    /// Texts per reward request at most (`reward_batch_size`).
    pub reward_batch_size: u64,
    /// Every sample and feedback at `max_tokens`.
    pub max_generated_tokens: u64,
    /// Most extra samples for duplicates (`prs.unique`): each may cost a policy request, a
    /// reward text and `max_tokens` more.
    pub max_extra_samples: u64,
    /// Requests to the judge (`prs.judge_top_k`): every pair of the top k, both orders.
    pub judge_requests: u64,
}

/// What a prompt's cost depends on besides its layer widths: the settings of the call's
/// sampler and clients that decide how many requests and tokens a layer takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CostSettings {
    /// Most samples in one policy request (`prs.max_choices_per_request`).
    pub max_choices_per_request: usize,
    /// Texts per reward request (`prs.reward_batch_size`).
    pub reward_batch_size: usize,
    /// Whether PRS asks for feedback before each refinement layer (`prs.feedback`).
    pub feedback: bool,
    /// Most tokens per sample (`prs.max_tokens`).
    pub max_tokens: u32,
}

impl PromptCost {
    /// The cost of a prompt sampled in layers of `widths` under `cfg`; `conversations`: the
    /// reward server is sent conversations, one per request (`reward_input = chat` as
    /// `messages`).
    pub(crate) fn of(widths: &[usize], cfg: &CostSettings, conversations: bool) -> Self {
        let per_request = cfg.max_choices_per_request.max(1);
        let batch = if conversations {
            1
        } else {
            cfg.reward_batch_size.max(1)
        };
        let feedback_calls = if cfg.feedback && widths.len() > 1 {
            widths.len() as u64 - 1
        } else {
            0
        };
        let samples: u64 = widths.iter().map(|w| *w as u64).sum();
        PromptCost {
            policy_requests: widths
                .iter()
                .map(|w| w.div_ceil(per_request) as u64)
                .sum::<u64>()
                + feedback_calls,
            reward_requests: widths.iter().map(|w| w.div_ceil(batch) as u64).sum(),
            reward_texts: samples,
            reward_batch_size: batch as u64,
            max_generated_tokens: (samples + feedback_calls) * u64::from(cfg.max_tokens),
            max_extra_samples: 0,
            judge_requests: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prs_prompt_costs_its_chunks_feedback_and_batches() {
        let mut cfg = CostSettings {
            max_choices_per_request: 3,
            reward_batch_size: 4,
            feedback: true,
            max_tokens: 10,
        };
        // layers of 4 and 2: ceil(4/3) + ceil(2/3) requests + 1 feedback
        let c = PromptCost::of(&[4, 2], &cfg, false);
        assert_eq!(c.policy_requests, 2 + 1 + 1);
        assert_eq!(c.reward_requests, 1 + 1);
        assert_eq!(c.reward_texts, 6);
        assert_eq!(c.max_generated_tokens, (6 + 1) * 10);
        cfg.feedback = false;
        assert_eq!(PromptCost::of(&[4, 2], &cfg, false).policy_requests, 3);
        assert_eq!(PromptCost::of(&[6], &cfg, false).policy_requests, 2);
        // conversations go to the reward server one per request
        let chat = PromptCost::of(&[4, 2], &cfg, true);
        assert_eq!((chat.reward_requests, chat.reward_batch_size), (6, 1));
    }
}
