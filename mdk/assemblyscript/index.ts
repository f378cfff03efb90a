// Package entry for `import … from "@capsule/mdk-assemblyscript"` (asc resolves <package>/index.ts).
export * from "./assembly/index";
