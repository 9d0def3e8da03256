# One image for every process of the system; docker-compose.yml picks the entry point.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY schemas ./schemas
COPY common ./common
COPY devtools ./devtools
COPY certs ./certs
COPY broker ./broker
COPY edge ./edge
COPY bridge ./bridge
COPY scripts ./scripts
# TypeScript runs through tsx's loader: no build step, the sources are the program.
ENTRYPOINT ["node", "--import", "tsx"]
CMD ["bridge/main.ts"]
