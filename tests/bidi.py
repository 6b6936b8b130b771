"""A tiny WebDriver BiDi client (https://w3c.github.io/webdriver-bidi/) for
Debian's firefox-esr, no geckodriver: Firefox runs headless with a fresh profile
and says where its BiDi endpoint listens (--remote-debugging-port=0); this
speaks JSON to it over one WebSocket (websocket-client)."""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import websocket

from octopus.harness import wait_for

FIREFOX = "/usr/bin/firefox-esr"

# Pages report CSP violations on the console too (as well as Firefox itself).
CSP_REPORTER = """() => document.addEventListener("securitypolicyviolation", (e) =>
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline")
                + " at " + e.sourceFile + ":" + e.lineNumber))"""


class BidiError(Exception):
    pass


class Firefox:
    def __init__(self, binary=FIREFOX, timeout=30.0):
        self.tmp = tempfile.mkdtemp(prefix="octopus-firefox-")
        self.log_path = os.path.join(self.tmp, "firefox.log")
        os.mkdir(os.path.join(self.tmp, "profile"))
        self.timeout, self.ws, self.next_id = timeout, None, 0
        self.entries = []  # log.entryAdded params, in order
        env = dict(os.environ, MOZ_CRASHREPORTER_DISABLE="1", MOZ_HEADLESS="1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "--headless", "-no-remote", "-profile", os.path.join(self.tmp, "profile"),
                 "--remote-debugging-port=0", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)  # its own process group: close() ends the content processes too
        try:
            url = wait_for(self._listening, 30.0, 0.05, "Firefox's WebDriver BiDi endpoint")
            self.ws = websocket.create_connection(url + "/session", timeout=timeout, suppress_origin=True)
            self.send("session.new", {"capabilities": {}})
            self.send("session.subscribe", {"events": ["log.entryAdded"]})
            self.context = self.send("browsingContext.getTree", {"maxDepth": 0})["contexts"][0]["context"]
            self.send("script.addPreloadScript", {"functionDeclaration": CSP_REPORTER})
        except BaseException:
            self.close()
            raise

    def new_tab(self, width=1280, height=800):
        """Opens a tab and makes it the one commands go to; returns the one before."""
        before, self.context = self.context, self.send("browsingContext.create", {"type": "tab"})["context"]
        self.send("browsingContext.setViewport", {"context": self.context,
                                                  "viewport": {"width": width, "height": height}})
        return before

    def _listening(self):
        with open(self.log_path, errors="replace") as f:
            log = f.read()
        if self.proc.poll() is not None:
            raise BidiError("Firefox exited with %s:\n%s" % (self.proc.returncode, log))
        m = re.search(r"WebDriver BiDi listening on (ws://\S+)", log)
        return m and m.group(1)

    def send(self, method, params, timeout=None):
        """One command; events that arrive meanwhile are kept. Returns its result."""
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        while True:
            self.ws.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                raise TimeoutError("no answer to %s in %.0f s" % (method, timeout)) from None
            if msg.get("type") == "event":
                if msg["method"] == "log.entryAdded":
                    self.entries.append(msg["params"])
            elif msg.get("id") == mine:
                if msg.get("type") == "error":
                    raise BidiError("%s: %s: %s" % (method, msg.get("error"), msg.get("message")))
                return msg["result"]

    def errors(self):
        """Console errors and uncaught exceptions (page errors) so far, as text."""
        self.eval("0")  # a round trip to the page: the events it sent before are in
        return ["%s: %s" % (e.get("type"), e.get("text")) for e in self.entries if e.get("level") == "error"]

    def navigate(self, url):
        self.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def call(self, function, *args):
        """Runs a JS function declaration in the page with primitive arguments
        (or element references); returns its (awaited) result as Python."""
        r = self.send("script.callFunction", {
            "functionDeclaration": function, "target": {"context": self.context}, "awaitPromise": True,
            "arguments": [to_remote(a) for a in args]})
        if r["type"] == "exception":
            raise BidiError("JS exception: %s" % r["exceptionDetails"]["text"])
        return from_remote(r["result"])

    def eval(self, expression):
        return self.call("() => (%s)" % expression)

    def wait_for(self, expression, timeout=10.0, what=None):
        """Polls a JS expression until it is truthy; returns its value."""
        return wait_for(lambda: self.eval(expression), timeout, 0.05, what or expression)

    def element(self, selector, timeout=10.0):
        """A reference to the (visible) element, scrolled into the viewport's centre."""
        self.wait_for("(e => e && e.getClientRects().length > 0)(document.querySelector(%s))"
                      % json.dumps(selector), timeout, "a visible " + selector)
        e = self.call("(s) => { const e = document.querySelector(s); e.scrollIntoView({block: 'center'}); return e; }",
                      selector)
        return {"sharedId": e["sharedId"]}

    def click(self, selector):
        """A real mouse click (input.performActions) in the middle of the element."""
        el = self.element(selector)
        self.send("input.performActions", {"context": self.context, "actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
                {"type": "pointerMove", "x": 0, "y": 0, "origin": {"type": "element", "element": el}},
                {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]})

    def type(self, selector, text):
        """Clicks into a text control, selects what it holds, and types text key by key."""
        self.click(selector)
        self.call("(s) => document.querySelector(s).select()", selector)
        keys = [{"type": t, "value": ch} for ch in text for t in ("keyDown", "keyUp")]
        self.send("input.performActions", {"context": self.context, "actions": [
            {"type": "key", "id": "keyboard", "actions": keys}]})

    def select(self, selector, value):
        """Picks an option of a <select> as a user would: value, then input and change."""
        self.element(selector)
        self.call("""(s, v) => { const e = document.querySelector(s);
            if (![...e.options].some((o) => o.value === v)) throw new Error(s + " has no option " + v);
            e.value = v;
            e.dispatchEvent(new Event("input", {bubbles: true}));
            e.dispatchEvent(new Event("change", {bubbles: true})); }""", selector, value)

    def screenshot(self, path):
        data = self.send("browsingContext.captureScreenshot", {"context": self.context})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            if self.ws:
                self.send("browser.close", {}, timeout=5)
                self.ws.close()
        except Exception:
            pass  # it may hang up before it answers
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of its process group
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def to_remote(v):
    """A script argument: an element reference as is, or a primitive."""
    if isinstance(v, dict) and "sharedId" in v:
        return v
    if v is None:
        return {"type": "null"}
    return {"type": {bool: "boolean", int: "number", float: "number", str: "string"}[type(v)], "value": v}


def from_remote(r):
    t = r["type"]
    if t in ("string", "boolean", "number", "undefined", "null"):
        return r.get("value")
    if t == "array":
        return [from_remote(x) for x in r.get("value", [])]
    if t == "object":  # string keys only
        return {k: from_remote(v) for k, v in r.get("value", [])}
    return r  # nodes and the rest: the remote value itself (a node has a sharedId)
