// Stored images of result items. <img src> cannot send the API key, so each image is
// fetched with it and shown from an object URL, which is revoked when the results go.

import { requestBlob } from './api.js';
import { collectionPath, h, itemPath } from './dom.js';

const PARALLEL = 4;

export class ImageLoader {
  constructor() {
    this.urls = [];
    this.queue = [];
    this.running = 0;
    this.generation = 0;
  }

  /** Fetch the image of `id` into `img`; a missing image becomes a "no image" note. */
  load(img, collection, id) {
    this.queue.push({
      img,
      path: `${collectionPath(collection)}/images/${itemPath(id)}`,
      generation: this.generation,
    });
    this.pump();
  }

  /** An object URL for a local file or blob, revoked with the others. */
  track(blob) {
    const url = URL.createObjectURL(blob);
    this.urls.push(url);
    return url;
  }

  /** Forget every image shown so far (new results replace them). */
  reset() {
    this.generation += 1;
    this.queue = [];
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
  }

  pump() {
    while (this.running < PARALLEL && this.queue.length) {
      const job = this.queue.shift();
      this.running += 1;
      this.fetch(job).finally(() => {
        this.running -= 1;
        this.pump();
      });
    }
  }

  async fetch({ img, path, generation }) {
    try {
      const blob = await requestBlob(path);
      if (generation !== this.generation) return;
      img.src = this.track(blob);
      img.closest('.thumb')?.classList.remove('loading');
    } catch (error) {
      if (generation !== this.generation) return;
      const note = error.status === 404 ? 'no image' : `image: ${error.title ?? error.message}`;
      img.replaceWith(h('span', { class: 'noimage' }, note));
    }
  }
}
