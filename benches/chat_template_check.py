"""Manual fidelity check (never in CI): prs renders reward chat templates exactly as
transformers does.

Renders two conversations through three template shapes (Llama-3 with BOS and
raise_exception; Zephyr, whose indentation tests trim_blocks / lstrip_blocks; ChatML with
`{%-` trimming) once with transformers' `apply_chat_template` and once with prs's
`reward_input()` under `prs.reward_chat_template_file`, and compares the texts byte for byte.

    python benches/chat_template_check.py TOKENIZER_DIR target/debug/prs

TOKENIZER_DIR: any Hugging Face tokenizer (only its Jinja machinery is used), e.g. the one
`../shared/realserver/serve_random_model.py --path DIR` writes. Needs `transformers`.
"""
import json
import os
import subprocess
import sys
import tempfile

from transformers import AutoTokenizer

TEMPLATES = {
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    "zephyr": "{% for message in messages %}\n    {% if message['role'] == 'user' %}\n        {{ '<|user|>\\n' + message['content'].strip() + eos_token }}\n    {% elif message['role'] == 'assistant' %}\n        {{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n    {% endif %}\n    {% if loop.last and add_generation_prompt %}\n        {{ '<|assistant|>' }}\n    {% endif %}\n{% endfor %}",
    "chatml": "{%- for message in messages %}\n{{- '<|im_start|>' + message.role + '\\n' + message.content | trim + '<|im_end|>' + '\\n' }}\n{%- endfor %}\n{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
}
# (user turn, assistant turn); prs builds the second user turn from prompt + preference
CONVERSATIONS = [("What is 2+2? ", "4"), ("Name a {answer} bird.\n\nBe brief.", "  A robin.\n")]
PRS_SQL = (
    "COPY (SELECT reward_input('What is 2+2? ', '4') AS a, "
    "reward_input('Name a {answer} bird.', '  A robin.' || chr(10), 'Be brief.') AS b) "
    "TO '%s' STORED AS JSON"
)


def main(tokenizer_dir, prs):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    same = True
    with tempfile.TemporaryDirectory() as work:
        for name, template in TEMPLATES.items():
            theirs = [
                tok.apply_chat_template(
                    [{"role": "user", "content": u}, {"role": "assistant", "content": a}],
                    chat_template=template,
                    tokenize=False,
                    bos_token="<s>",
                    eos_token="</s>",
                )
                for u, a in CONVERSATIONS
            ]
            config = os.path.join(work, name + ".json")
            with open(config, "w") as f:
                json.dump({"chat_template": template, "bos_token": {"content": "<s>"}, "eos_token": "</s>"}, f)
            out = os.path.join(work, name + ".out.json")
            subprocess.run(
                [prs, "sql", "--set", "reward_chat_template_file=" + config, PRS_SQL % out],
                check=True,
                capture_output=True,
            )
            with open(out) as f:
                row = json.loads(f.readline())
            for ours, their in zip([row["a"], row["b"]], theirs):
                ok = ours == their
                same &= ok
                print(f"{name:8} {'same' if ok else 'DIFFERENT'}: {ours!r}" + ("" if ok else f" vs {their!r}"))
    print("all byte-identical" if same else "differences found")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
