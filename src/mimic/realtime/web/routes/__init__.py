"""The web app's endpoints, one `APIRouter` per concern (`main.create_app` includes them behind `deps.authorize`):
`live` (the page's settings, the reactions' files, the WebSockets), `models` (the model picker), `logs` (the CSV
logs), `captures` (photos of your face) and `finetune` (fine-tuning jobs). A handler only turns a request into a call
and the call's result into an answer; docs/api.md describes them all."""
