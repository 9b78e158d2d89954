//! Deterministic per-request seeds.

use sha2::{Digest, Sha256};

/// The seed sent with a request: a hash of (run seed, prompt id, layer, first sample index),
/// kept in 0..2^31 so every server accepts it. Feedback requests use `sample_index = -1`.
pub fn derive_seed(run_seed: u64, prompt_id: &str, layer: i32, sample_index: i32) -> i64 {
    let mut h = Sha256::new();
    h.update(b"prs-seed-v1");
    h.update(run_seed.to_le_bytes());
    h.update((prompt_id.len() as u64).to_le_bytes());
    h.update(prompt_id.as_bytes());
    h.update(layer.to_le_bytes());
    h.update(sample_index.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(b) & 0x7fff_ffff) as i64
}
