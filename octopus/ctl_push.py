"""``plugins push FILE``: upload a plugin with PUT /plugins/{name}.

The server imports the file in a separate process before accepting it, so a
plugin that does not import is refused (400, field "source") and the one in
place keeps running.
"""
import os
import urllib.parse

from octopus.ctl import REFUSED, CtlError, print_json
from octopus.plugins import MAX_PLUGIN_BYTES as MAX_SOURCE  # the server's limit



def push(client, args):
    if not args.file:
        raise CtlError("plugins push needs FILE, the plugin's .py file")
    name = os.path.splitext(os.path.basename(args.file))[0]
    try:
        with open(args.file, "rb") as f:
            source = f.read(MAX_SOURCE + 1)
    except OSError as e:
        raise CtlError("cannot read %s: %s" % (args.file, e.strerror or e))
    if len(source) > MAX_SOURCE:
        raise CtlError("%s is larger than %d bytes, the server's limit" % (args.file, MAX_SOURCE))
    try:
        plugin = client.send("PUT", "/plugins/" + urllib.parse.quote(name, safe=""), source,
                             content_type="text/x-python")
    except CtlError:
        if client.last_status == 405:
            raise CtlError("this server does not take plugin uploads (no PUT /plugins/{name}); "
                           "copy the file into its PLUGINS_DIR instead", REFUSED)
        raise
    if args.json:
        return print_json(plugin)
    print("Plugin %s %s: sha256 %s, actions: %s" % (
        plugin.get("name", name), "added" if client.last_status == 201 else "replaced",
        plugin.get("sha256"), ", ".join(plugin.get("actions") or []) or "(none)"))
