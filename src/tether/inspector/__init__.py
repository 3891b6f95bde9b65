"""The live inspector (`/inspector`): pages a person reads in a browser, made from the server's
own state — its WebSocket connections and their turns, the chains in the store, the engine — by
server-side templates (Jinja2), refreshed by the page every second. `pages.py` is its routes,
`views.py` what each view shows, `templates/` and `static/` the pages themselves."""
