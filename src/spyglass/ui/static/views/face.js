// Face collections: who is in a photo, or in the webcam (a frame every 500 ms).

import { request } from '../api.js';
import { clearAlert, showError } from '../alerts.js';
import { timing } from '../controls.js';
import { collectionPath, h, num, uid } from '../dom.js';
import { imagePicker } from '../upload.js';

const FRAME_MS = 500;
const LONG_SIDE = 640;

const WORDS = { success: 'Identified', unknown: 'Unknown person', no_face: 'No face found' };

function verdict(data) {
  const rows = [
    h(
      'p',
      { class: `verdict ${data.status}` },
      h('strong', {}, WORDS[data.status] ?? data.status),
      data.status === 'success' ? `: ${data.person}` : '',
    ),
  ];
  if (data.status !== 'no_face') {
    rows.push(
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Nearest'),
        h('dd', {}, data.person ?? '–'),
        h('dt', {}, 'Similarity'),
        h('dd', {}, num(data.similarity, 3)),
        h('dt', {}, 'Distance'),
        h('dd', {}, num(data.distance, 3)),
      ),
    );
  }
  if ((data.faces ?? []).length > 1) {
    rows.push(
      h(
        'ol',
        { class: 'faces', 'aria-label': 'Faces in the photo' },
        data.faces.map((f) =>
          h(
            'li',
            {},
            `${WORDS[f.status] ?? f.status}${f.status === 'success' ? `: ${f.person}` : ''} (similarity ${num(f.similarity, 3)})`,
          ),
        ),
      ),
    );
  }
  return rows;
}

/** Draw the frame and the face boxes on `canvas` (drawing is not styling: no CSP issue). */
function drawBoxes(canvas, source, width, height, faces) {
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext('2d');
  g.drawImage(source, 0, 0, width, height);
  g.lineWidth = Math.max(2, Math.round(width / 200));
  g.font = `${Math.max(14, Math.round(width / 28))}px system-ui, sans-serif`;
  for (const face of faces ?? []) {
    const b = face.box;
    if (!b) continue;
    g.strokeStyle = face.status === 'success' ? '#2ec27e' : '#e01b24';
    g.strokeRect(b.left, b.top, b.right - b.left, b.bottom - b.top);
    const label = face.status === 'success' ? face.person : 'unknown';
    g.fillStyle = g.strokeStyle;
    g.fillText(label, b.left, Math.max(12, b.top - 4));
  }
}

/** A frame of the video as a JPEG at most LONG_SIDE pixels on its long side. */
function grab(video, canvas) {
  const scale = Math.min(1, LONG_SIDE / Math.max(video.videoWidth, video.videoHeight));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.85));
}

export function mount(container, collection) {
  const status = timing();
  const result = h('div', { class: 'face-result', 'aria-live': 'polite' });
  const canvas = h('canvas', {
    class: 'frame',
    'aria-label': 'The photo with the faces found',
    role: 'img',
    hidden: true,
  });
  const scratch = document.createElement('canvas');
  const video = h('video', {
    class: 'camera',
    muted: true,
    playsinline: true,
    hidden: true,
    'aria-label': 'Webcam',
  });
  video.muted = true;
  const cameraButton = h('button', { type: 'button' }, 'Start the webcam');
  const everyFace = h('input', { type: 'checkbox', id: uid('all') });
  let stream = null;
  let timer = null;
  let inFlight = false;
  let controller = null;

  async function identify(blob, drawSource) {
    const form = new FormData();
    form.append('file', blob, 'frame.jpg');
    if (everyFace.checked) form.append('all_faces', 'true');
    controller = new AbortController();
    const { data, roundTripMs } = await request(`${collectionPath(collection.name)}/identify`, {
      method: 'POST',
      form,
      signal: controller.signal,
    });
    result.replaceChildren(...verdict(data));
    status.done(undefined, roundTripMs, (data.faces ?? []).length, 'face');
    if (drawSource) {
      const [source, width, height] = drawSource;
      drawBoxes(canvas, source, width, height, data.faces);
      canvas.hidden = false;
    }
  }

  const picker = imagePicker({
    label: 'Photo to identify',
    preview: false,
    async onFile(file) {
      clearAlert();
      stopCamera();
      try {
        status.busy('Identifying…');
        const bitmap = await createImageBitmap(file).catch(() => null);
        await identify(file, bitmap && [bitmap, bitmap.width, bitmap.height]);
      } catch (error) {
        if (error.name !== 'AbortError') status.clear();
        showError(error);
      }
    },
  });

  async function tick() {
    if (inFlight || !stream || video.readyState < 2) return;
    inFlight = true;
    try {
      const blob = await grab(video, scratch);
      if (blob && stream) await identify(blob, [video, scratch.width, scratch.height]);
    } catch (error) {
      showError(error);
      if (error.status === 401 || error.status === 403 || error.status === 404) stopCamera();
    } finally {
      inFlight = false;
    }
  }

  async function startCamera() {
    clearAlert();
    try {
      if (!navigator.mediaDevices?.getUserMedia)
        throw new Error('this browser gives no camera access here (it needs https or localhost)');
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 1280 } },
        audio: false,
      });
      video.srcObject = stream;
      video.hidden = false;
      await video.play();
      cameraButton.textContent = 'Stop the webcam';
      status.busy('Watching the webcam…');
      timer = setInterval(tick, FRAME_MS);
    } catch (error) {
      stopCamera();
      showError(new Error(`Camera unavailable: ${error.message}`));
    }
  }

  function stopCamera() {
    clearInterval(timer);
    timer = null;
    for (const track of stream?.getTracks() ?? []) track.stop();
    stream = null;
    video.srcObject = null;
    video.hidden = true;
    cameraButton.textContent = 'Start the webcam';
  }

  cameraButton.addEventListener('click', () => (stream ? stopCamera() : startCamera()));
  container.replaceChildren(
    h('h2', { class: 'view-title' }, 'Who is this?'),
    h(
      'div',
      { class: 'face-inputs' },
      picker.element,
      h('div', { class: 'webcam' }, cameraButton, video),
    ),
    h(
      'label',
      { for: everyFace.id, class: 'check' },
      everyFace,
      ' Identify every face, not only the largest',
    ),
    status.element,
    result,
    canvas,
  );
  return {
    unmount() {
      stopCamera();
      controller?.abort();
      picker.destroy();
    },
  };
}
