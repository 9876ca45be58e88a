import { cpSync, createReadStream, existsSync } from "node:fs";
import { join, normalize } from "node:path";
import { defineConfig, type Plugin } from "vite";

// OpenSeadragon draws its buttons from PNGs it loads by URL (`prefixUrl`): ship them as they are.
const OSD_IMAGES = "node_modules/openseadragon/build/openseadragon/images";
const OSD_IMAGES_URL = "/openseadragon-images/";

function openseadragonImages(): Plugin {
  let outDir = "dist";
  return {
    name: "iain-openseadragon-images",
    configResolved(config) {
      outDir = config.build.outDir;
    },
    // `npm run dev`: serve them straight from node_modules.
    configureServer(server) {
      server.middlewares.use(OSD_IMAGES_URL, (req, res, next) => {
        const name = normalize(decodeURIComponent((req.url ?? "").split("?")[0] ?? "")).replace(
          /^[/\\.]+/,
          "",
        );
        const file = join(OSD_IMAGES, name);
        if (!name.endsWith(".png") || !existsSync(file)) return next();
        res.setHeader("Content-Type", "image/png");
        createReadStream(file).pipe(res);
      });
    },
    // `npm run build`: copy them into dist/.
    writeBundle() {
      cpSync(OSD_IMAGES, join(outDir, OSD_IMAGES_URL), { recursive: true });
    },
  };
}

// `npm run dev` proxies the hub's routes to a running `iain serve` (IAIN_HUB, default :8000).
const hub = process.env.IAIN_HUB ?? "http://127.0.0.1:8000";

export default defineConfig({
  base: "/",
  plugins: [openseadragonImages()],
  define: { __OSD_IMAGES_URL__: JSON.stringify(OSD_IMAGES_URL) },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: { "/api": hub, "/slides": hub, "/iiif": hub },
  },
});
