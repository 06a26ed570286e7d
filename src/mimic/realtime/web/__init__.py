"""The web front-end of the realtime app: ``python realtime.py ui=web`` serves a page (``static/``) that sends the
browser's camera frames over a WebSocket to the same per-frame pipeline the OpenCV window runs, one per connection.

`server.serve` checks the settings and runs the app of `main.create_app` on uvicorn; `main` puts together the state
(`deps`: the models on offer in `catalog`, the live connections in `sessions`, the photos in `captures`, the
fine-tuning jobs of `mimic.jobs`) and the routers of `routes`, one per concern.
"""
