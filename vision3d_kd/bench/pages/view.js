// Shared by the pages: the query's canvas and camera, and errors reported in window.done.
// Query: w, h (canvas pixels, drawn at the top left on white), eye, target, up (comma-separated, in the
// file's own coordinates), fov (vertical degrees).
import * as THREE from "three";

export const query = new URLSearchParams(location.search);
const vec = (k) => query.get(k).split(",").map(Number);

export function fail(e) {
  window.done = window.done || "error: " + (e && e.message ? e.message : e);
}
addEventListener("error", (e) => fail(e.message));
addEventListener("unhandledrejection", (e) => fail(e.reason));

export function canvasAndCamera() {
  const w = Number(query.get("w")), h = Number(query.get("h"));
  const renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
  renderer.setPixelRatio(1);
  renderer.setSize(w, h);
  renderer.setClearColor(0xffffff, 1);
  document.body.appendChild(renderer.domElement);
  const camera = new THREE.PerspectiveCamera(Number(query.get("fov")), w / h, 0.05, 100);
  camera.position.set(...vec("eye"));
  camera.up.set(...vec("up"));
  camera.lookAt(new THREE.Vector3(...vec("target")));
  return { renderer, camera };
}
