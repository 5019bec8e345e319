import { defineConfig } from 'vite';

// Served by the analyzer at /ui/ (analyzer/api/console_files.py) from dist/, which is committed.
export default defineConfig({
  base: '/ui/',
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 1024 },
  test: { include: ['src/**/*.test.js'] },
});
