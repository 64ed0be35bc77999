"""The OpenAI chat-completions subset, driven by the real `openai` Python client."""

from __future__ import annotations

import base64

import openai
import pytest

from tests.serve.helpers import serving


def _image_message(path, text: str = "Describe this image.") -> list[dict]:
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": content}]


def test_the_openai_client_gets_ranked_captions_with_usage(builtin_model, scene_files):
    with serving(builtin_model, api_key="k3y") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k3y", max_retries=0)
        assert [entry.id for entry in client.models.list()] == ["builtin"]
        messages = _image_message(scene_files[0])
        answer = client.chat.completions.create(
            model="builtin", messages=messages, n=2, max_tokens=40, temperature=0.8, top_p=0.95, seed=4
        )
        assert len(answer.choices) == 2 and all(choice.message.content for choice in answer.choices)
        assert answer.choices[0].message.role == "assistant" and answer.choices[0].finish_reason in ("stop", "length")
        assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
        assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
        # the first choice is the service's chosen caption for the same image and settings
        direct = builtin_model.caption(
            [scene_files[0]], candidates=5, max_new_tokens=40, temperature=0.8, top_p=0.95, seed=4
        )
        assert answer.choices[0].message.content == direct[0].text
        again = client.chat.completions.create(
            model="builtin", messages=messages, n=2, max_tokens=40, temperature=0.8, top_p=0.95, seed=4
        )
        assert [c.message.content for c in again.choices] == [c.message.content for c in answer.choices]
        greedy = client.chat.completions.create(model="builtin", messages=messages, temperature=0)
        assert len(greedy.choices) == 1 and greedy.choices[0].message.content

        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
        with pytest.raises(openai.BadRequestError, match="exactly one image_url"):
            client.chat.completions.create(model="builtin", messages=[{"role": "user", "content": "hello"}])
        with pytest.raises(openai.BadRequestError, match="not an image"):
            bad = "data:image/png;base64," + base64.b64encode(b"<html>nope</html>").decode()
            client.chat.completions.create(
                model="builtin",
                messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": bad}}]}],
            )
        with pytest.raises(openai.BadRequestError, match="stream"):
            client.chat.completions.create(model="builtin", messages=messages, stream=True)
        with pytest.raises(openai.UnprocessableEntityError):
            client.chat.completions.create(model="builtin", messages=messages, n=0)
