import { MikroORM } from '@mikro-orm/postgresql';
describe('toolchain', () => {
  it('when ESM packages load, then MikroORM is a class', () => {
    expect(typeof MikroORM).toBe('function');
  });
});
