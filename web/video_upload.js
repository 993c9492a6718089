// Lets the pack's video loaders upload every format they read. The frontend's own video upload button takes only
// mp4 and webm (and drops anything whose MIME type is not video/*), so gif, webp, mkv, mov and avi needed copying
// into the input folder by hand. This adds a button beside it that takes all of them.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const LOADERS = ["ALCM_LoadVideo", "ALCM_LoadVideoLatent"];
const ACCEPT = ".mp4,.webm,.mkv,.mov,.avi,.m4v,.gif,.webp,video/*,image/gif,image/webp";

async function upload(file) {
  const body = new FormData();
  body.append("image", file, file.name);  // ComfyUI's upload route takes any file under this field
  body.append("overwrite", "false");
  const response = await api.fetchApi("/upload/image", { method: "POST", body });
  if (response.status !== 200) throw new Error(`${response.status} ${response.statusText}`);
  const saved = await response.json();
  return saved.subfolder ? `${saved.subfolder}/${saved.name}` : saved.name;
}

app.registerExtension({
  name: "AnimateLCM.VideoUpload",
  nodeCreated(node) {
    if (!LOADERS.includes(node.comfyClass)) return;
    const choice = node.widgets?.find((w) => w.name === "video");
    if (!choice) return;
    const input = Object.assign(document.createElement("input"), { type: "file", accept: ACCEPT });
    input.style.display = "none";
    input.dataset.alcmUpload = node.comfyClass;
    input.addEventListener("change", async () => {
      const [file] = input.files;
      input.value = "";
      if (!file) return;
      try {
        const name = await upload(file);
        const values = choice.options.values;
        if (Array.isArray(values) && !values.includes(name)) values.push(name);
        choice.value = name;
        choice.callback?.(name);
        node.graph?.setDirtyCanvas(true, true);
      } catch (error) {
        alert(`Upload of ${file.name} failed: ${error.message}`);
      }
    });
    document.body.append(input);
    const button = node.addWidget("button", "upload any video, gif or webp", null, () => input.click());
    button.serialize = false;  // a button has no value: saved workflows keep their widget values in order
    const removed = node.onRemoved;
    node.onRemoved = function () {
      input.remove();
      return removed?.apply(this, arguments);
    };
  },
});
