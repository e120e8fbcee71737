"""A teacher behind an OpenAI-compatible server (a stdlib server in a thread), through
``alignkit data generate``: proposals, the classification probability from top_logprobs or from
the answer's text, retries, and an error that names the server."""

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alignkit.core.chat_client import ChatClient
from alignkit.plugins.curation.cli import main
from alignkit.plugins.curation.teacher import HttpTeacher, TeacherError

PROPOSALS = ["Explain how volcanoes erupt.", "Plan a weekend cycling trip for beginners.",
             "Compose a haiku about morning tea.", "List the stages of glacier formation.",
             "Suggest chords for a slow jazz ballad.", "Describe what a beekeeper does in spring.",
             "Convert the time shown by a sundial into clock time.", "Tell a short legend about a lighthouse.",
             "Give folding steps for a paper crane.", "Why do oceans have tides?",
             "Recommend an opening for a new chess player.", "Outline a sourdough baking schedule."]


class Handler(BaseHTTPRequestHandler):
    counter = {"proposals": 0, "requests": 0, "fail_first": 0}

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.counter["requests"] += 1
        if Handler.counter["fail_first"] > 0:
            Handler.counter["fail_first"] -= 1
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"busy")
            return
        if self.path.startswith("/broken/"):
            reply = b"<html>not json</html>"
        else:
            reply = json.dumps(self.answer(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply)

    def answer(self, body):
        text = body["messages"][-1]["content"]
        choice = {"index": 0, "finish_reason": "stop"}
        if body.get("max_tokens") == 1:  # a yes / no question
            choice["message"] = {"role": "assistant", "content": "No"}
            if body.get("logprobs") and self.path.startswith("/lp/"):
                top = [{"token": "Yes", "logprob": math.log(0.8)}, {"token": "No", "logprob": math.log(0.2)}]
                choice["logprobs"] = {"content": [{**top[0], "top_logprobs": top}]}
        elif "Come up with a series of tasks" in text:
            k = Handler.counter["proposals"]
            Handler.counter["proposals"] += 1
            choice["message"] = {"role": "assistant", "content": " " + PROPOSALS[k % len(PROPOSALS)]}
        else:
            choice["message"] = {"role": "assistant", "content": "Input: \nOutput: A clear, short explanation."}
        return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.counter.update(proposals=0, requests=0, fail_first=0)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def teacher(url, **kw):
    return HttpTeacher(ChatClient(base_url=url, model="fake", backoff=0.01, error=TeacherError, **kw))


def test_http_teacher_answers_and_probabilities(server):
    t = teacher(f"{server}/lp/v1")
    assert t.yes_probability(["Is it?", "Is it?"]) == pytest.approx([0.8, 0.8])
    assert teacher(f"{server}/text/v1").yes_probability(["Is it?"]) == [0.0], "from the answer 'No'"
    assert t.complete(["Come up with a series of tasks:\n1."], max_new_tokens=8, temperature=0.7, top_p=1.0,
                      seed=0) == ["Explain how volcanoes erupt."]
    Handler.counter["fail_first"] = 2  # two 503s, then an answer: retried
    assert t.yes_probability(["Is it?"]) == pytest.approx([0.8])
    with pytest.raises(TeacherError, match=r"/broken/v1/chat/completions returned a body that is not JSON"):
        teacher(f"{server}/broken/v1").yes_probability(["Is it?"])


def test_alignkit_data_generate_with_a_served_teacher(server, tmp_path, capsys):
    args = ["generate", f"data.teacher.base_url={server}/lp/v1", "data.teacher.model=served-model",
            "data.teacher.licence=CC-BY-4.0", f"data.output_dir={tmp_path}", "data.num_instructions=6",
            "data.request_batch_size=3", "data.teacher.concurrency=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"alignkit: data: {tmp_path / 'data.jsonl'}" in out
    records = [json.loads(x) for x in (tmp_path / "data.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(r["is_classification"] for r in records), "P(yes) = 0.8 from top_logprobs"
    assert {r["output"] for r in records} == {"A clear, short explanation."}
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["teacher"]["base_url"].endswith("/lp/v1") and meta["licence_of_outputs"] == "CC-BY-4.0"
    assert meta["counts"]["requests"] == 6 and meta["counts"]["generated"] == 6
    before = Handler.counter["requests"]
    assert main(args) == 0, "a second run reads the cache"
    assert Handler.counter["requests"] == before
