"""The official `openai` Python SDK as a real client of the gateway (see conftest.py)."""

import openai
import pytest


def client(gw, key="sk-demo-us"):
    return openai.OpenAI(base_url=f"{gw.base}/v1", api_key=key, max_retries=0)


def test_chat_completion(gateway):
    r = client(gateway).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content.startswith("Hello from")
    assert r.usage.total_tokens > 0


def test_streaming_chat_completion(gateway):
    stream = client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.count("chunk") == 5
    # The gateway asked the upstream for usage to meter the stream; the client, which did not
    # ask, sees none of it.
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_streaming_with_usage_asked_for(gateway):
    stream = client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_embeddings(gateway):
    r = client(gateway, "sk-demo-embed").embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(r.data) == 2
    assert len(r.data[0].embedding) == 8


def test_models_list_is_filtered(gateway):
    ids = [m.id for m in client(gateway, "sk-demo-embed").models.list()]
    assert ids == ["text-embedding-3-small"]


def test_azure_client(gateway):
    az = openai.AzureOpenAI(azure_endpoint=gateway.base, api_key="sk-demo-us", api_version="2024-10-21", max_retries=0)
    r = az.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content.startswith("Hello from")
    r = az.embeddings.create(model="text-embedding-3-small", input="x")
    assert len(r.data) == 1


def test_denied_call_surfaces_status_and_code(gateway):
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gateway, "sk-demo-cn").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 403
    assert e.value.code == "compute_threshold_exceeded"
    assert e.value.response.headers["x-customs-reason"] == "compute_threshold_exceeded"


def test_azure_denied_and_bad_key(gateway):
    az = openai.AzureOpenAI(azure_endpoint=gateway.base, api_key="sk-demo-cn", api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as e:
        az.chat.completions.create(model="claude-3-5-sonnet", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_allowed"
    with pytest.raises(openai.AuthenticationError) as e:
        client(gateway, "sk-not-a-key").chat.completions.create(model="gpt-4o", messages=[])
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway).chat.completions.create(model="gpt-5-imaginary", messages=[])
    assert e.value.code == "model_not_found"


def test_responses_create(gateway):
    r = client(gateway).responses.create(model="gpt-4o-mini", input="hello", max_output_tokens=64)
    assert r.status == "completed"
    assert r.output_text.startswith("Hello from")
    assert r.usage.output_tokens == 5 and r.usage.input_tokens > 0


def test_responses_stream(gateway):
    stream = client(gateway).responses.create(model="gpt-4o-mini", input="hi", stream=True)
    events = list(stream)
    assert events[0].type == "response.created"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.count("chunk") == 5
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.output_tokens == 5


def test_responses_denied_like_chat(gateway):
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gateway, "sk-demo-cn").responses.create(model="gpt-4o", input="x")
    assert e.value.status_code == 403 and e.value.code == "compute_threshold_exceeded"


def create_response(gw, key="sk-demo-us", **kw):
    return client(gw, key).responses.create(model="gpt-4o-mini", input="hello", max_output_tokens=64, **kw)


# The other tenant below, demo-de, may use gpt-4o-mini itself (`customs explain`), so its 404s are
# the binding's and not the policy's; the ownership check also runs before the policy is asked.
OTHER = "sk-demo-de"


def test_responses_retrieve_by_creator_returns_it(gateway):
    created = create_response(gateway)
    r = client(gateway).responses.retrieve(created.id)
    assert r.id == created.id
    assert r.status == "completed"
    assert r.output_text == created.output_text


def test_responses_by_id_from_other_tenant_is_not_found(gateway):
    created = create_response(gateway)
    other = client(gateway, OTHER)
    calls = [
        lambda: other.responses.retrieve(created.id),
        lambda: other.responses.delete(created.id),
        lambda: other.responses.cancel(created.id),
        lambda: other.responses.input_items.list(created.id),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as e:
            call()
        assert e.value.status_code == 404
        assert e.value.code == "response_not_found"
        assert e.value.response.headers["x-customs-reason"] == "response_not_found"
    # The other tenant's delete reached nothing: the creator still has its response.
    assert client(gateway).responses.retrieve(created.id).status == "completed"


def test_responses_unknown_id_is_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway).responses.retrieve("resp_never_issued")
    assert e.value.code == "response_not_found"


def test_responses_input_items_by_creator_lists_them(gateway):
    created = create_response(gateway)
    page = client(gateway).responses.input_items.list(created.id)
    assert page.data == []


def test_responses_delete_by_creator_deletes_it(gateway):
    created = create_response(gateway)
    assert client(gateway).responses.delete(created.id) is None
    with pytest.raises(openai.NotFoundError):
        client(gateway).responses.retrieve(created.id)


def test_responses_previous_response_id_by_creator_continues(gateway):
    first = create_response(gateway)
    second = create_response(gateway, previous_response_id=first.id)
    assert second.status == "completed"
    assert second.id != first.id
    assert second.previous_response_id == first.id


def test_responses_previous_response_id_from_other_tenant_is_not_found(gateway):
    first = create_response(gateway)
    with pytest.raises(openai.NotFoundError) as e:
        create_response(gateway, OTHER, previous_response_id=first.id)
    assert e.value.code == "response_not_found"
    assert e.value.param == "previous_response_id"
    assert e.value.response.headers["x-customs-reason"] == "response_not_found"


def test_responses_background_create_is_queued_then_retrievable_by_creator(gateway):
    created = create_response(gateway, background=True)
    assert created.status == "queued"
    assert created.background is True
    done = client(gateway).responses.retrieve(created.id)
    assert done.status == "completed"
    assert done.output_text.startswith("Hello from")
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway, OTHER).responses.retrieve(created.id)
    assert e.value.code == "response_not_found"


def test_responses_streamed_id_is_bound_to_creator(gateway):
    events = list(client(gateway).responses.create(model="gpt-4o-mini", input="hi", stream=True))
    id = events[-1].response.id
    assert client(gateway).responses.retrieve(id).status == "completed"
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway, OTHER).responses.retrieve(id)
    assert e.value.code == "response_not_found"
