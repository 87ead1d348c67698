/** One plotted series: points (dimension, accuracy), drawn as a line or as markers. */
export interface Series {
  name: string;
  colour: string;
  points: { dimension: number; accuracy: number; label?: string }[];
  line: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Accuracy (y, %) against dimension (x, log scale) as a standalone SVG. The y axis starts at
 * `yFloor` when given (what lies below is clipped, and the axis says so), so that the region
 * that matters is not squashed by tiny prefixes far below it.
 */
export function paretoSvg(title: string, series: Series[], dims: readonly number[], yFloor?: number): string {
  const W = 720;
  const H = 460;
  const m = { left: 64, right: 190, top: 40, bottom: 50 };
  const all = series.flatMap((s) => s.points);
  const lowest = Math.min(...all.map((p) => p.accuracy));
  const clipped = yFloor !== undefined && lowest < yFloor;
  const yMin = Math.floor((clipped ? yFloor : lowest) * 200) / 200;
  const yMax = Math.ceil(Math.max(...all.map((p) => p.accuracy)) * 200) / 200;
  const xMin = Math.log2(dims[0]!);
  const xMax = Math.log2(dims.at(-1)!);
  const x = (d: number) => m.left + ((Math.log2(d) - xMin) / (xMax - xMin)) * (W - m.left - m.right);
  const y = (a: number) => H - m.bottom - ((a - yMin) / (yMax - yMin || 1)) * (H - m.top - m.bottom);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - m.right / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
  ];
  for (const d of dims) {
    out.push(`<line x1="${x(d)}" x2="${x(d)}" y1="${m.top}" y2="${H - m.bottom}" stroke="#eee"/>`);
    out.push(`<text x="${x(d)}" y="${H - m.bottom + 18}" text-anchor="middle">${d}</text>`);
  }
  const ySteps = 6;
  for (let i = 0; i <= ySteps; i++) {
    const a = yMin + ((yMax - yMin) * i) / ySteps;
    out.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${y(a)}" y2="${y(a)}" stroke="#eee"/>`);
    out.push(`<text x="${m.left - 8}" y="${y(a) + 4}" text-anchor="end">${(100 * a).toFixed(2)}</text>`);
  }
  out.push(`<text x="${(m.left + W - m.right) / 2}" y="${H - 12}" text-anchor="middle">dimension (log scale; cascade: average dimension used)</text>`);
  out.push(
    `<text transform="translate(16 ${(m.top + H - m.bottom) / 2}) rotate(-90)" text-anchor="middle">test accuracy (%)${clipped ? `; points below ${(100 * yMin).toFixed(1)} are off the chart` : ''}</text>`,
  );
  out.push(`<clipPath id="plot"><rect x="${m.left - 5}" y="${m.top - 5}" width="${W - m.left - m.right + 10}" height="${H - m.top - m.bottom + 10}"/></clipPath>`);
  out.push('<g clip-path="url(#plot)">');
  series.forEach((s) => {
    const pts = [...s.points].sort((a, b) => a.dimension - b.dimension);
    if (s.line && pts.length > 1)
      out.push(`<polyline fill="none" stroke="${s.colour}" stroke-width="2" points="${pts.map((p) => `${x(p.dimension).toFixed(1)},${y(p.accuracy).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      out.push(`<circle cx="${x(p.dimension).toFixed(1)}" cy="${y(p.accuracy).toFixed(1)}" r="4" fill="${s.colour}"><title>${esc(`${s.name}: ${p.dimension.toFixed(1)}-d, ${(100 * p.accuracy).toFixed(2)}%${p.label ? ` (${p.label})` : ''}`)}</title></circle>`);
    }
  });
  out.push('</g>');
  series.forEach((s, i) => {
    const ly = m.top + 10 + i * 20;
    out.push(`<circle cx="${W - m.right + 20}" cy="${ly}" r="5" fill="${s.colour}"/>`);
    out.push(`<text x="${W - m.right + 32}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
