// The bus seam belongs to pub/sub (src/pubsub/bus.ts); re-exported for the layers above.
export type { Bus, BusDelivery, BusInterestFeed, BusInterest } from '../pubsub/bus.js';
