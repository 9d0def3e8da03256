# One image for every process of the system; docker-compose.yml picks the entry point.
# Node.js 22 LTS; package.json's engines lists the versions the code supports (20.19+ and 22).
FROM node:22-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production

# Production dependencies only. tsx is one of them: the processes run their TypeScript through
# tsx's loader (no build step, the sources are the program).
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Only what runs. The certificate folder brings its code (certs/cli.ts); .dockerignore keeps
# generated keys out of the build context (checked by `npm run check:image`).
COPY tsconfig.json ./
COPY schemas ./schemas
COPY common ./common
COPY certs ./certs
COPY broker ./broker
COPY edge ./edge
COPY bridge ./bridge
COPY ctl ./ctl
# the simulated sensors of docker-compose.yml
COPY devtools/sensor-simulator.ts ./devtools/sensor-simulator.ts
COPY scripts/simulate-sensors.ts ./scripts/simulate-sensors.ts

# The edge agent's database lives on a volume at /data (docker-compose.yml; a new named volume
# takes the ownership of the image's directory) or, by default, in /app/.data.
RUN mkdir -p /data /app/.data && chown node:node /data /app/.data
USER node

ENTRYPOINT ["node", "--import", "tsx"]
CMD ["bridge/main.ts"]
