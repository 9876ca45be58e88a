/// <reference types="vite/client" />

/** Where the build puts OpenSeadragon's button images (set in vite.config.ts). */
declare const __OSD_IMAGES_URL__: string;
