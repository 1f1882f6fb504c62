"""The official `anthropic` Python SDK as a real client of the gateway's Messages API (see
conftest.py). The example config serves `claude-3-5-sonnet` over Messages only, from the mock."""

import anthropic
import pytest

MODEL = "claude-3-5-sonnet"
HELLO = [{"role": "user", "content": "hello"}]
# The mock's default number of content chunks per stream, one output token each.
MOCK_CHUNKS = 5


def client(gw, key="sk-demo-us", **kw):
    return anthropic.Anthropic(base_url=gw.base, api_key=key, max_retries=0, **kw)


def test_messages_create_returns_text_and_usage(gateway):
    m = client(gateway).messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text.startswith("Hello from")
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


def test_messages_create_by_alias_is_served(gateway):
    m = client(gateway).messages.create(model="claude-3-5-sonnet-20241022", max_tokens=64, messages=HELLO)
    assert m.content[0].text.startswith("Hello from")


def test_messages_stream_text_and_final_usage(gateway):
    with client(gateway).messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.count("chunk") == MOCK_CHUNKS
    assert final.content[0].text == text
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens == MOCK_CHUNKS


def test_messages_count_tokens_counts_input(gateway):
    r = client(gateway).messages.count_tokens(model=MODEL, messages=HELLO)
    assert r.input_tokens > 0


def test_messages_key_in_x_api_key_alone_identifies_tenant(gateway):
    # The SDK sends its key as a Bearer token; Anthropic's own header must work on its own too.
    def call(key):
        headers = {"Authorization": anthropic.omit, "X-Api-Key": key}
        return client(gateway).messages.create(model=MODEL, max_tokens=64, messages=HELLO, extra_headers=headers)

    assert call("sk-demo-us").content[0].text.startswith("Hello from")
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        call("sk-demo-cn")
    assert e.value.response.headers["x-customs-reason"] == "model_not_allowed"


@pytest.mark.parametrize(
    "key, model, error, status, kind, code",
    [
        ("sk-demo-cn", MODEL, anthropic.PermissionDeniedError, 403, "permission_error", "model_not_allowed"),
        ("sk-not-a-key", MODEL, anthropic.AuthenticationError, 401, "authentication_error", "invalid_api_key"),
        ("sk-demo-us", "gpt-4o", anthropic.BadRequestError, 400, "invalid_request_error", "operation_not_supported"),
        ("sk-demo-us", "claude-imaginary", anthropic.NotFoundError, 404, "not_found_error", "model_not_found"),
    ],
)
def test_messages_refusals_raise_the_sdks_typed_errors_with_the_code(gateway, key, model, error, status, kind, code):
    with pytest.raises(error) as e:
        client(gateway, key).messages.create(model=model, max_tokens=64, messages=HELLO)
    assert e.value.status_code == status
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == kind
    assert e.value.body["error"]["code"] == code
    assert e.value.response.headers["x-customs-reason"] == code


def test_messages_count_tokens_denied_like_create(gateway):
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        client(gateway, "sk-demo-cn").messages.count_tokens(model=MODEL, messages=HELLO)
    assert e.value.body["error"]["code"] == "model_not_allowed"


def test_messages_stream_denied_raises_before_any_event(gateway):
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        with client(gateway, "sk-demo-cn").messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
            list(stream.text_stream)
    assert e.value.response.headers["x-customs-reason"] == "model_not_allowed"


